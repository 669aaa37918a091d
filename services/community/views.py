"""The community service's HTTP side: its home page; the staff API (/api/v1)
the console reads for a signed-in staff member within their scope is api.py."""
from __future__ import annotations

import logging

from flask import Blueprint as WebBlueprint
from flask import render_template

from services.common.auth import public

log = logging.getLogger(__name__)

web = WebBlueprint("web", __name__)


@web.get("/")
@public
def home():
    return render_template("community_home.html")
