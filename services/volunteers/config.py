"""Matching's configuration: the shared defaults read from the environment
(services.common.settings), the engine's weights, and the dispatch policy
and deadlines per category.

Defaults follow Chinese hotline practice (12345, GB/T 33358-2016): a request is taken
within 2 hours in daytime, an ordinary service completed within 5 working
days (never more than 7 days)."""
from services.common.roster import roster_settings
from services.common.settings import base_config, integer, json_object

DEFAULT_POLICY = {
    "policy": "sequential",  # or "broadcast": the top K at once, first to accept wins
    "broadcast_k": 3,
    "offer_minutes": 30,  # a volunteer has this long to answer one offer
    "accept_minutes": 120,  # nobody took it by then: escalate
    "complete_hours": 7 * 24,  # not completed by then: escalate
}

# The retired doctors' services go to several at once: whoever is free first.
CATEGORY_POLICIES = {
    "health_check": {"policy": "broadcast", "broadcast_k": 3, "offer_minutes": 60},
    "prenatal_guidance": {"policy": "broadcast", "broadcast_k": 3, "offer_minutes": 60},
}

WEIGHTS = {"nearness": 100.0, "load": 20.0, "fairness": 10.0, "reliability": 10.0, "rating": 10.0}


def load() -> dict:
    cfg = base_config("volunteers")
    cfg["MATCH_WEIGHTS"] = {**WEIGHTS, **json_object("LINLI_MATCH_WEIGHTS", '{"nearness": 120}')}
    cfg["DISPATCH_DEFAULT"] = {**DEFAULT_POLICY, **json_object("LINLI_DISPATCH_DEFAULT", '{"offer_minutes": 20}')}
    overrides = json_object("LINLI_DISPATCH_POLICIES", '{"haircut": {"policy": "broadcast"}}')
    cfg["DISPATCH_POLICIES"] = {k: {**CATEGORY_POLICIES.get(k, {}), **overrides.get(k, {})}
                                for k in {*CATEGORY_POLICIES, *overrides}}
    # Escalated and still not taken after this long: the next level of the chain.
    cfg["ESCALATION_STEP_MINUTES"] = integer("LINLI_ESCALATION_STEP_MINUTES", 120)
    cfg["LOGIN_LINK_MINUTES"] = integer("LINLI_LOGIN_LINK_MINUTES", 30)
    cfg["PORTAL_SESSION_DAYS"] = integer("LINLI_PORTAL_SESSION_DAYS", 30)
    cfg.update(roster_settings())
    return cfg


def policy(cfg: dict, category: str) -> dict:
    return {**cfg["DISPATCH_DEFAULT"], **cfg["DISPATCH_POLICIES"].get(category, {})}
