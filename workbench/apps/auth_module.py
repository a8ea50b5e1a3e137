"""Bokeh ``--auth-module`` of ``workbench serve --credentials``: users sign in at ``/login``."""

from workbench.apps.access import LoginHandler, LogoutHandler, get_user

login_url = "/login"
logout_url = "/logout"

__all__ = ["LoginHandler", "LogoutHandler", "get_user", "login_url", "logout_url"]
