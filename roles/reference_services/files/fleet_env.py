"""The .env reader shared by the reference worker and API (installed beside them)."""


def read_env(path):
    """KEY=value lines; blank lines and # comments skipped; one pair of surrounding quotes removed."""
    values = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith('#') or '=' not in line:
                continue
            key, value = line.split('=', 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
                value = value[1:-1]
            values[key.strip()] = value
    return values


def truthy(value):
    return str(value).lower() in ('1', 'true', 'yes', 'on')
