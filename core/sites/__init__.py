"""Sites, rooms and accounts: opening and closing accounts (``accounts``), site import (``importer``),
summaries, room lookup, managers, tenant self-service reads (``selfservice``) and the demo site.
"""
