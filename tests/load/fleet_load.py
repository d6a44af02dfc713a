"""Steady mTLS load on Redis for the lifecycle tests: runs on a pki_clients host with Debian's python3-redis.

Every operation is one Redis command (SET, GET, or LPUSH of a new job id for the workers), at a steady rate.
A new TLS connection is opened every --per-connection operations, re-reading the .env, the client identity
(client.pem: key + certificate in one file) and the CA bundle each time; REDIS_USE_TLS=false in the .env makes
it a plaintext password-only client (the fleet before its switch to mTLS). Nothing is retried: a failed command is counted as
failed. On SIGTERM (or --seconds) the counts are written to --stats as JSON:
  ops, failed, failures (first 20), connections, jobs_pushed, longest_pause_s (longest gap between two
  successful operations), started, stopped.

  python3 fleet_load.py --env /etc/fleetpki/load.env --stats /var/tmp/fleet-load.json
.env: REDIS_HOST, REDIS_PORT, REDIS_USERNAME (its own ACL user; optional), REDIS_PASSWORD, REDIS_USE_TLS (default
true), CLIENT_PEM, CA_BUNDLE.
"""
import argparse
import json
import os
import signal
import time

import redis

JOBS = 'fleet:jobs'


def read_env(path):
    values = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith('#') and '=' in line:
                key, value = line.split('=', 1)
                values[key.strip()] = value.strip()
    return values


def new_client(env):
    if env.get('REDIS_USE_TLS', 'true').lower() in ('false', 'no', '0'):
        return redis.Redis(host=env['REDIS_HOST'], port=int(env.get('REDIS_PORT', '6379')),
                           username=env.get('REDIS_USERNAME') or None, password=env['REDIS_PASSWORD'],
                           socket_timeout=5, socket_connect_timeout=5,
                           retry_on_timeout=False, single_connection_client=True)
    return redis.Redis(host=env['REDIS_HOST'], port=int(env.get('REDIS_PORT', '6379')),
                       username=env.get('REDIS_USERNAME') or None, password=env['REDIS_PASSWORD'], ssl=True,
                       ssl_certfile=env['CLIENT_PEM'],
                       ssl_keyfile=env['CLIENT_PEM'], ssl_ca_certs=env['CA_BUNDLE'], ssl_cert_reqs='required',
                       ssl_check_hostname=True, socket_timeout=5, socket_connect_timeout=5,
                       retry_on_timeout=False, single_connection_client=True)


class Load:
    def __init__(self, args):
        self.args = args
        self.env = read_env(args.env)
        self.stopping = False
        self.stats = {'ops': 0, 'failed': 0, 'failures': [], 'connections': 0, 'jobs_pushed': 0,
                      'longest_pause_s': 0.0, 'started': time.time(), 'stopped': None,
                      'job_prefix': args.job_prefix}

    def write_stats(self):
        tmp = self.args.stats + '.tmp'
        with open(tmp, 'w') as handle:
            json.dump(self.stats, handle)
        os.rename(tmp, self.args.stats)

    def fail(self, number, exc):
        self.stats['failed'] += 1
        if len(self.stats['failures']) < 20:
            self.stats['failures'].append('%.3f op %d: %s: %s' % (time.time(), number, type(exc).__name__, exc))

    def run(self):
        signal.signal(signal.SIGTERM, self.on_term)
        deadline = time.time() + self.args.seconds if self.args.seconds else None
        client, used = None, 0
        last_ok = time.time()
        number = 0
        while not self.stopping and (deadline is None or time.time() < deadline):
            number += 1
            try:
                if client is None or used >= self.args.per_connection:
                    if client is not None:
                        client.close()
                    client, used = None, 0
                    self.env = read_env(self.args.env)
                    self.stats['tls'] = self.env.get('REDIS_USE_TLS', 'true')
                    self.stats['connections'] += 1
                    client = new_client(self.env)  # redis-py connects here: a refused connection is a failure
                used += 1
                kind = number % 3
                if kind == 0:
                    client.lpush(JOBS, '%s-%d' % (self.args.job_prefix, number))
                    self.stats['jobs_pushed'] += 1
                elif kind == 1:
                    client.set('fleet:load:%d' % (number % 100), number)
                else:
                    value = client.get('fleet:load:%d' % ((number - 1) % 100))
                    if value is None or int(value) != number - 1:
                        raise ValueError('GET returned %r, expected %d' % (value, number - 1))
                self.stats['ops'] += 1
                now = time.time()
                self.stats['longest_pause_s'] = max(self.stats['longest_pause_s'], round(now - last_ok, 3))
                last_ok = now
            except (redis.RedisError, OSError, ValueError) as exc:
                self.fail(number, exc)
                client, used = None, 0  # never retried: the next operation opens a new connection
            if number % 50 == 0:
                self.write_stats()
            time.sleep(self.args.interval)
        self.stats['stopped'] = time.time()
        self.write_stats()

    def on_term(self, *_):
        self.stopping = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--env', required=True)
    parser.add_argument('--stats', required=True)
    parser.add_argument('--interval', type=float, default=0.02)
    parser.add_argument('--per-connection', type=int, default=20)
    parser.add_argument('--seconds', type=float, default=0)
    parser.add_argument('--job-prefix', default='job')
    Load(parser.parse_args()).run()


if __name__ == '__main__':
    main()
