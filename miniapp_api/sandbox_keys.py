"""Locally generated keys for sandbox mode (the demo and the tests), shared through a directory.

The sandbox app (playing WeChat, WeChat Pay and Alipay) and the meterpay app read the same files,
so each side signs with its own private key and verifies the other's public key, as in
production. Nothing here is a real credential: the ids are labelled ``SANDBOX``.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import os
from functools import lru_cache
from pathlib import Path

from core import config
from core.config import ROOT

WECHAT_APPID = "wxsandbox00000001"  # the official account
WECHAT_SECRET = "sandbox-secret"
MINIAPP_APPID = "wxsandboxmini0001"  # the mini-program
MINIAPP_SECRET = "sandbox-mini-secret"
WXPAY_MCHID = "1900000109"
WXPAY_APIV3_KEY = "SANDBOXsandboxSANDBOXsandbox0032"  # 32 bytes, as APIv3 keys are
WXPAY_CERT_SERIAL = "5A4D1B0E000000000000000000000000000000A1"  # our merchant certificate (any hex)
WXPAY_PUBLIC_KEY_ID = "PUB_KEY_ID_SANDBOX0000000000000001"
ALIPAY_APPID = "2021000000000001"

# file name -> (what it is, format)
FILES = {
    "wxpay_merchant_key.pem": "merchant private key (PKCS#8), signs our API v3 requests",
    "wxpay_platform_key.pem": "WeChat Pay platform private key (the fake signs with it)",
    "wxpay_platform_pub.pem": "WeChat Pay platform public key (public-key mode)",
    "wxpay_platform_cert.pem": "WeChat Pay platform certificate (certificate mode)",
    "alipay_app_key.pem": "our Alipay app private key (PKCS#1), signs RSA2 requests",
    "alipay_app_pub.pem": "our Alipay app public key (the fake verifies with it)",
    "alipay_platform_key.pem": "Alipay's private key (the fake signs with it)",
    "alipay_platform_pub.pem": "Alipay's public key (we verify with it)",
}


def key_dir() -> Path:
    from miniapp_api import settings  # noqa: F401  (declares METERPAY_SANDBOX_KEY_DIR)
    return config.get("METERPAY_SANDBOX_KEY_DIR") or ROOT / "var" / "sandbox-keys"


def path(name: str) -> Path:
    return ensure_keys(str(key_dir())) / name


def read(name: str) -> str:
    return path(name).read_text()


@lru_cache(maxsize=8)
def ensure_keys(directory: str) -> Path:
    """Create the key files once (under a file lock, so two processes agree on one set)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((d / name).exists() for name in FILES):
            _generate(d)
    return d


def _generate(d: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def new_key():
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def private_pem(key, fmt) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())

    def public_pem(key) -> bytes:
        return key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)

    merchant, platform, app, alipay = new_key(), new_key(), new_key(), new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meterpay sandbox WeChat Pay platform")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(platform.public_key())
            .serial_number(int(WXPAY_CERT_SERIAL, 16) + 1).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650)).sign(platform, hashes.SHA256()))
    out = {
        "wxpay_merchant_key.pem": private_pem(merchant, serialization.PrivateFormat.PKCS8),
        "wxpay_platform_key.pem": private_pem(platform, serialization.PrivateFormat.PKCS8),
        "wxpay_platform_pub.pem": public_pem(platform),
        "wxpay_platform_cert.pem": cert.public_bytes(serialization.Encoding.PEM),
        "alipay_app_key.pem": private_pem(app, serialization.PrivateFormat.TraditionalOpenSSL),
        "alipay_app_pub.pem": public_pem(app),
        "alipay_platform_key.pem": private_pem(alipay, serialization.PrivateFormat.TraditionalOpenSSL),
        "alipay_platform_pub.pem": public_pem(alipay),
    }
    for fname, data in out.items():
        tmp = d / f".{fname}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, d / fname)


def platform_cert_serial() -> str:
    """The platform certificate's serial as WeChat Pay writes it (upper-case hex)."""
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(read("wxpay_platform_cert.pem").encode())
    return format(cert.serial_number, "X")
