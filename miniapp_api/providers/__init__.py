"""The SDK-backed payment providers, registered with core's provider registry on import."""
from __future__ import annotations

from core.payments.provider import get_provider, register


def _wechat():
    from miniapp_api.providers.wechat import make
    return make()


def _alipay():
    from miniapp_api.providers.alipay import make
    return make()


register("wechat", _wechat)
register("alipay", _alipay)

__all__ = ["get_provider"]
