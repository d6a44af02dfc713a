"""Reference fleet worker: takes jobs from Redis over mTLS, reliably, and reloads its TLS files on SIGHUP.

It reads everything from its .env (REDIS_HOST, REDIS_PORT, REDIS_USERNAME (its own ACL user), REDIS_PASSWORD,
REDIS_USE_TLS, REDIS_TLS_CERT,
REDIS_TLS_KEY, REDIS_TLS_CA, WORKER_NAME). Jobs are ids pushed to the list fleet:jobs; each is moved with BLMOVE
into fleet:processing:<worker> while it runs, added to the set fleet:done, then removed, so a crash loses no job
(the processing list is re-queued at start). A heartbeat (fleet:heartbeat:<worker>) carries the serial of the
client certificate in use. SIGHUP: finish the current job, re-read .env and certificates, reconnect. The heartbeat also carries a digest of
the .env and TLS files it loaded, so --expect-heartbeat tells whether the worker runs on the files now on disk.

  python3 fleet-worker --env /opt/fleet-worker/.env           run
  python3 fleet-worker --env /opt/fleet-worker/.env --check   connect once with redis-py, PING, print the serial
"""
import argparse
import hashlib
import json
import os
import signal
import socket
import sys
import time

import redis
from cryptography import x509

from fleet_env import read_env, truthy

JOBS = 'fleet:jobs'
DONE = 'fleet:done'
DUPLICATES = 'fleet:done:duplicates'


def cert_serial(path):
    with open(path, 'rb') as handle:
        return '%X' % x509.load_pem_x509_certificate(handle.read()).serial_number


def files_digest(env_path, env):
    """sha256 over the .env and the TLS files it names: the heartbeat shows which versions the worker runs on."""
    digest = hashlib.sha256()
    paths = [env_path]
    if truthy(env.get('REDIS_USE_TLS')):
        paths += [env['REDIS_TLS_CERT'], env['REDIS_TLS_KEY'], env['REDIS_TLS_CA']]
    for path in paths:
        with open(path, 'rb') as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def connect(env):
    options = dict(host=env['REDIS_HOST'], port=int(env.get('REDIS_PORT', '6379')),
                   username=env.get('REDIS_USERNAME') or None, password=env.get('REDIS_PASSWORD') or None,
                   socket_timeout=10, socket_connect_timeout=5,
                   decode_responses=True)
    if truthy(env.get('REDIS_USE_TLS', 'false')):
        # Debian's redis-py 4.3.4 does not check the host name unless asked.
        options.update(ssl=True, ssl_certfile=env['REDIS_TLS_CERT'], ssl_keyfile=env['REDIS_TLS_KEY'],
                       ssl_ca_certs=env['REDIS_TLS_CA'], ssl_cert_reqs='required', ssl_check_hostname=True)
    client = redis.Redis(**options)
    client.ping()
    return client


class Worker:
    def __init__(self, env_path):
        self.env_path = env_path
        self.reload_requested = False
        self.stopping = False
        self.client = None
        self.env = None
        self.serial = None
        self.digest = None
        self.name = None
        self.last_heartbeat = 0.0
        self.recorded = None

    def log(self, message):
        print('fleet-worker[%s]: %s' % (self.name or '-', message), flush=True)

    def load(self):
        self.env = read_env(self.env_path)
        self.name = self.env.get('WORKER_NAME') or socket.gethostname()
        self.serial = cert_serial(self.env['REDIS_TLS_CERT']) if truthy(self.env.get('REDIS_USE_TLS')) else None
        self.digest = files_digest(self.env_path, self.env)

    def reconnect(self):
        delay = 0.2
        while not self.stopping:
            try:
                self.load()
                new_client = connect(self.env)
            except (redis.RedisError, OSError, KeyError, ValueError) as exc:
                self.log('connect failed (%s: %s), retrying' % (type(exc).__name__, exc))
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            old, self.client = self.client, new_client
            if old is not None:
                old.connection_pool.disconnect()
            self.log('connected to %s:%s tls=%s serial=%s' % (self.env['REDIS_HOST'], self.env.get('REDIS_PORT'),
                                                              self.env.get('REDIS_USE_TLS'), self.serial))
            self.heartbeat(force=True)
            return

    @property
    def processing(self):
        return 'fleet:processing:%s' % self.name

    def heartbeat(self, force=False):
        now = time.time()
        if force or now - self.last_heartbeat >= 1.0:
            self.client.set('fleet:heartbeat:%s' % self.name, json.dumps({
                'worker': self.name, 'serial': self.serial, 'files': self.digest, 'pid': os.getpid(),
                'ts': now}), ex=30)
            self.last_heartbeat = now

    def requeue_unfinished(self):
        while self.client.lmove(self.processing, JOBS, 'RIGHT', 'LEFT') is not None:
            pass

    def process(self, job):
        if job != self.recorded:
            time.sleep(float(self.env.get('WORKER_JOB_SECONDS', '0.01')))
            # A job already in the done set was delivered twice: count it, the load test asserts zero.
            if not self.client.sadd(DONE, job):
                self.client.incr(DUPLICATES)
            self.recorded = job  # a retry after a reconnect must not count its own first attempt
        self.client.lrem(self.processing, 1, job)

    def run(self):
        signal.signal(signal.SIGHUP, self.on_hup)
        signal.signal(signal.SIGTERM, self.on_term)
        self.reconnect()
        self.requeue_unfinished()
        job = None
        while not self.stopping:
            try:
                if self.reload_requested:
                    self.reload_requested = False
                    self.log('SIGHUP: reloading .env and certificates')
                    self.reconnect()
                self.heartbeat()
                if job is None:
                    job = self.client.blmove(JOBS, self.processing, 1, 'LEFT', 'RIGHT')
                if job is not None:
                    self.process(job)
                    job = None
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                # The job (if any) is still in our processing list: finish it after reconnecting.
                self.log('connection lost (%s), reconnecting' % exc)
                self.reconnect()
        self.log('stopped')

    def on_hup(self, *_):
        self.reload_requested = True

    def on_term(self, *_):
        self.stopping = True


def expect_heartbeat(env_path):
    env = read_env(env_path)
    name = env.get('WORKER_NAME') or socket.gethostname()
    expected = cert_serial(env['REDIS_TLS_CERT']) if truthy(env.get('REDIS_USE_TLS')) else None
    expected_files = files_digest(env_path, env)
    try:
        raw = connect(env).get('fleet:heartbeat:%s' % name)
    except (redis.RedisError, OSError) as exc:
        print('cannot read the heartbeat: %s: %s' % (type(exc).__name__, exc))
        return 1
    beat = json.loads(raw) if raw else {}
    age = time.time() - beat.get('ts', 0)
    if beat.get('serial') != expected or age > 5:
        print('worker %s: heartbeat serial %s (age %.1f s), expected %s' % (name, beat.get('serial'), age, expected))
        return 1
    if beat.get('files') != expected_files:
        print('worker %s: runs on older .env, certificate, key or CA files (serial %s); it needs a SIGHUP'
              % (name, expected))
        return 1
    print('worker %s: heartbeat on serial %s (age %.1f s)' % (name, expected, age))
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--env', default='/opt/fleet-worker/.env')
    parser.add_argument('--check', action='store_true')
    parser.add_argument('--expect-heartbeat', action='store_true',
                        help='exit 0 when the running worker has a fresh heartbeat with the serial of its cert file')
    args = parser.parse_args()
    if args.expect_heartbeat:
        return expect_heartbeat(args.env)
    if args.check:
        env = read_env(args.env)
        try:
            client = connect(env)
            serial = cert_serial(env['REDIS_TLS_CERT']) if truthy(env.get('REDIS_USE_TLS')) else None
            print(json.dumps({'ok': client.ping(), 'serial': serial, 'host': env['REDIS_HOST']}))
        except (redis.RedisError, OSError) as exc:
            print(json.dumps({'ok': False, 'error': '%s: %s' % (type(exc).__name__, exc)}))
            return 1
        return 0
    Worker(args.env).run()
    return 0


if __name__ == '__main__':
    sys.exit(main())
