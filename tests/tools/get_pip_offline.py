"""Stand-in for get-pip.py, which ansible-test downloads from a host this network cannot reach.

ansible-test runs this file with pip's arguments (``--disable-pip-version-check pip==X ...``)
in a fresh venv created without pip: bootstrap pip with ensurepip, then let pip do the install.
"""
import subprocess
import sys

subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'], stdout=subprocess.DEVNULL)
args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '-q'] + args)
