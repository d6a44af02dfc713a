"""Steady mTLS load on the callback API for the lifecycle tests: runs on a pki_clients host, standard library only.

Every request is GET <url> on a new TLS connection (a new handshake each time) with the client certificate, the CA
bundle verified and the host name checked, at a steady rate. Nothing is retried: a request that fails (refused,
reset, handshake error, timeout, a status other than 200) is counted as failed. On SIGTERM (or --seconds) the counts
are written to --stats as JSON (also every 50 requests):
  ops, failed, failures (first 20), longest_pause_s (longest gap between two successful requests), serials (the
  server certificate serials seen, hex, in order of first sight), started, stopped.

  python3 api_load.py --url https://api1:8443/health --client-pem /etc/fleetpki/client/client.pem \
      --ca /etc/fleetpki/ca-bundle.pem --stats /var/tmp/fleet-api-load.json
"""
import argparse
import http.client
import json
import os
import signal
import ssl
import time
import urllib.parse


class Load:
    def __init__(self, args):
        self.args = args
        self.url = urllib.parse.urlsplit(args.url)
        self.stopping = False
        self.stats = {'ops': 0, 'failed': 0, 'failures': [], 'longest_pause_s': 0.0, 'serials': [],
                      'started': time.time(), 'stopped': None}

    def write_stats(self):
        tmp = self.args.stats + '.tmp'
        with open(tmp, 'w') as handle:
            json.dump(self.stats, handle)
        os.rename(tmp, self.args.stats)

    def fail(self, number, exc):
        self.stats['failed'] += 1
        if len(self.stats['failures']) < 20:
            self.stats['failures'].append('%.3f request %d: %s: %s' % (time.time(), number, type(exc).__name__, exc))

    def context(self):
        # Read for every connection, as a client renewing its own files would.
        context = ssl.create_default_context(cafile=self.args.ca)
        context.load_cert_chain(self.args.client_pem)
        return context

    def request(self):
        conn = http.client.HTTPSConnection(self.url.hostname, self.url.port or 443, context=self.context(),
                                           timeout=self.args.timeout)
        try:
            conn.connect()
            serial = conn.sock.getpeercert().get('serialNumber', '?')
            conn.request('GET', self.url.path or '/')
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise ValueError('HTTP %d: %r' % (response.status, body[:200]))
            return serial
        finally:
            conn.close()

    def run(self):
        signal.signal(signal.SIGTERM, self.on_term)
        deadline = time.time() + self.args.seconds if self.args.seconds else None
        last_ok = time.time()
        number = 0
        while not self.stopping and (deadline is None or time.time() < deadline):
            number += 1
            try:
                serial = self.request()
                self.stats['ops'] += 1
                if serial not in self.stats['serials']:
                    self.stats['serials'].append(serial)
                now = time.time()
                self.stats['longest_pause_s'] = max(self.stats['longest_pause_s'], round(now - last_ok, 3))
                last_ok = now
            except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
                self.fail(number, exc)
            if number % 50 == 0:
                self.write_stats()
            time.sleep(self.args.interval)
        self.stats['stopped'] = time.time()
        self.write_stats()

    def on_term(self, *_):
        self.stopping = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--url', required=True)
    parser.add_argument('--client-pem', required=True, help='key and certificate in one PEM file')
    parser.add_argument('--ca', required=True)
    parser.add_argument('--stats', required=True)
    parser.add_argument('--interval', type=float, default=0.02)
    parser.add_argument('--timeout', type=float, default=5)
    parser.add_argument('--seconds', type=float, default=0)
    Load(parser.parse_args()).run()


if __name__ == '__main__':
    main()
