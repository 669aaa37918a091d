"""Linli's three services and the small infrastructure they share.

Import as `services.requests` etc.; never put this folder itself on sys.path
(its `requests` package would shadow the HTTP library).
"""
