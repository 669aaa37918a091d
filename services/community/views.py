"""The community service's HTTP side: its home page, and the staff API
(/api/v1) the console reads for a signed-in staff member within their scope."""
from __future__ import annotations

import logging

from flask import Blueprint as WebBlueprint
from flask import render_template

from services.common.auth import public
from services.common.factory import ApiBlueprint

log = logging.getLogger(__name__)

web = WebBlueprint("web", __name__)
api = ApiBlueprint("api", __name__, url_prefix="/api/v1", description="Register of households and residents, visits")


@web.get("/")
@public
def home():
    return render_template("community_home.html")
