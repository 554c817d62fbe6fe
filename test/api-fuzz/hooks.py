"""Schemathesis hooks for test/api-fuzz (loaded through SCHEMATHESIS_HOOKS).

- `viewer_cannot_write`: a custom check. A request to a documented write operation (any method but
  GET, HEAD, OPTIONS) that carries the viewer token (DWCP_FUZZ_VIEWER_TOKEN) must be answered 403,
  whatever else is wrong with it. Requests with other credentials, or none, are not its business, so
  it is inert in the admin pass. Undeclared methods (the coverage phase sends TRACE and the like) are
  left to the admin pass's `unsupported_method`. POST /v1/cluster/join is exempt: it is public and
  takes the cluster's join token, not an API token, so a viewer token there is just a wrong
  credential.
- A `before_call` hook that keeps the fuzzer from pulling the ground from under itself: it never
  removes the node it talks to (DWCP_FUZZ_PINNED_NODE) and never revokes the tokens the run needs
  (DWCP_FUZZ_PINNED_TOKENS, comma-separated ids). Such a request is sent for an id that does not exist
  instead, so it still exercises the operation. Every other node and token is fair game.
"""

import os

import schemathesis

READS = frozenset({"GET", "HEAD", "OPTIONS"})
NOT_ROLE_GUARDED = frozenset({"POST /v1/cluster/join"})
# The shape of a node or token id the API accepts, but one that no record has.
NO_SUCH_ID = "pinned-by-fuzz-harness"


def _pinned(name):
    return {v for v in os.environ.get(name, "").split(",") if v}


PINNED = {
    "/v1/nodes/{id}": _pinned("DWCP_FUZZ_PINNED_NODE"),
    "/v1/tokens/{id}": _pinned("DWCP_FUZZ_PINNED_TOKENS"),
}


@schemathesis.hook
def before_call(context, case, kwargs):
    pinned = PINNED.get(case.operation.path)
    if case.method.upper() != "DELETE" or not pinned or not case.path_parameters:
        return
    if str(case.path_parameters.get("id")) in pinned:
        case.path_parameters = {**case.path_parameters, "id": NO_SUCH_ID}


@schemathesis.check
def viewer_cannot_write(ctx, response, case):
    """A write with a viewer token must be refused with 403, whatever else is wrong with it."""
    token = os.environ.get("DWCP_FUZZ_VIEWER_TOKEN")
    request = response.request
    method = request.method.upper()
    operation = case.operation
    if not token or method in READS or method != operation.method.upper():
        return None
    if f"{method} {operation.path}" in NOT_ROLE_GUARDED:
        return None
    if request.headers.get("Authorization") != f"Bearer {token}":
        return None
    if response.status_code != 403:
        raise AssertionError(
            f"{request.method} {request.path_url} with a viewer token answered "
            f"{response.status_code}, not 403: {response.content[:300]!r}"
        )
    return None
