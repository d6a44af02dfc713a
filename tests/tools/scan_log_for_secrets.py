"""Fail when a log shows a secret: a PEM private key, a line of any key under a PKI dir, a Redis ACL password the
roles made (PKI_DIR/redis-acl/*), or a given string.

Usage: scan_log_for_secrets.py LOG PKI_DIR [SECRET ...]
"""
import pathlib
import sys


def key_lines(pki_dir):
    """Each line of every key file, except a line found in a certificate under the PKI dir: an unencrypted EC key
    holds its public key, whose bytes can fall on the same base64 line as in the certificate (public, not secret)."""
    certificates = [path for path in pathlib.Path(pki_dir).rglob('*.pem') if not path.name.endswith('key.pem')]
    public = '\n'.join(path.read_text(errors='replace') for path in certificates)
    for path in sorted(pathlib.Path(pki_dir).rglob('*key.pem')):
        for line in path.read_text().splitlines():
            if line and not line.startswith('-----') and len(line) >= 32 and line not in public:
                yield path, line


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    log = pathlib.Path(argv[1]).read_text(errors='replace')
    findings = []
    if 'PRIVATE KEY-----' in log:
        findings.append('a PEM private key block')
    for secret in argv[3:]:
        if secret and secret in log:
            findings.append('the secret string #%d' % (argv[3:].index(secret) + 1))
    acl_dir = pathlib.Path(argv[2]) / 'redis-acl'
    for path in sorted(acl_dir.iterdir()) if acl_dir.is_dir() else []:
        if path.read_text().strip() and path.read_text().strip() in log:
            findings.append('the Redis password of %s' % path.name)
    keys = list(key_lines(argv[2]))
    if not keys:
        findings.append('no key files under %s to compare with (wrong PKI dir?)' % argv[2])
    leaked = sorted({str(path) for path, line in keys if line in log})
    findings += ['a line of %s' % path for path in leaked]
    if findings:
        print('secret scan of %s FAILED: the log shows %s' % (argv[1], '; '.join(findings)))
        return 1
    print('secret scan of %s: no private key, key line or secret in %d lines (%d key lines checked)'
          % (argv[1], log.count('\n'), len(keys)))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
