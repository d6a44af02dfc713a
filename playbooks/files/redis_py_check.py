"""Connect to Redis with redis-py exactly as a worker does, from its .env; print one JSON line.

Usage: redis_py_check.py ENV_FILE [--redis-host NAME]   (--redis-host overrides REDIS_HOST, to prove that a
client expecting another host name is refused). Exit 0 when PING answers, 1 otherwise.
"""
import json
import sys

import redis


def read_env(path):
    values = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith('#') and '=' in line:
                key, value = line.split('=', 1)
                values[key.strip()] = value.strip().strip('"\'')
    return values


def main(argv):
    env = read_env(argv[1])
    host = argv[argv.index('--redis-host') + 1] if '--redis-host' in argv else env['REDIS_HOST']
    use_tls = env.get('REDIS_USE_TLS', 'false').lower() in ('1', 'true', 'yes')
    options = dict(host=host, port=int(env.get('REDIS_PORT', '6379')), password=env.get('REDIS_PASSWORD') or None,
                   socket_timeout=5, socket_connect_timeout=5)
    if use_tls:
        options.update(ssl=True, ssl_certfile=env['REDIS_TLS_CERT'], ssl_keyfile=env['REDIS_TLS_KEY'],
                       ssl_ca_certs=env['REDIS_TLS_CA'], ssl_cert_reqs='required', ssl_check_hostname=True)
    try:
        ok = redis.Redis(**options).ping()
    except (redis.RedisError, OSError) as exc:
        print(json.dumps({'ok': False, 'host': host, 'tls': use_tls, 'error': '%s: %s' % (type(exc).__name__, exc)}))
        return 1
    print(json.dumps({'ok': bool(ok), 'host': host, 'tls': use_tls}))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
