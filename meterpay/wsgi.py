"""WSGI entry point for gunicorn: ``gunicorn meterpay.wsgi:app``."""
from core.signals import load_listeners
from meterpay.app import create_app

load_listeners()
app = create_app()
