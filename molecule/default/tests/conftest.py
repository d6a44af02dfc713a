"""The fixtures every scenario shares, from molecule/shared/fleetlab.py (also importable by the tests)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / 'shared'))
from fleetlab import fleet, pki_dir, unique  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
