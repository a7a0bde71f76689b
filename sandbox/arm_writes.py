"""Gateway writes: the PUT as a long-running operation, its operation status, overlapping
writers (superseded or refused), per the recorded write protocol (sandbox/arm.py's docstring)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from sandbox import arm_backrefs as backrefs
from sandbox import arm_ops as ops
from sandbox import arm_validation as val
from sandbox.arm_core import ArmCore, _WriteOp
from sandbox.arm_http import Request, Response
from sandbox.arm_validation import ArmError
from sandbox.faults import Effect, LroEnd, merge_patch, superseded_error


class WriteOps(ArmCore):
    def _other_writer(self, key: str, patch: dict, seconds: float = 0.0) -> None:
        """Someone else (Terraform, a pipeline) writes the gateway between a client's GET and
        PUT (docs/sources.md#overlapping-writes: ARM does not honour If-Match here).

        `seconds` > 0: their write is a PUT whose operation runs that long, as ours would: the
        gateway is `Updating` meanwhile and a PUT in that time supersedes (cancels) it.
        """
        previous = self._gateways[key]
        doc = merge_patch(previous, patch)
        record: dict[str, str | None] = {"gateway": previous["id"], "etag": None, "error": None}
        try:
            val.validate_gateway(doc, previous["id"], previous)
        except ArmError as exc:
            record["error"] = f"{exc.code}: {exc.message}"  # the patch is dropped, not half-done
            self._other_writes.append(record)
            return
        doc = backrefs.strip(doc)
        val.keep_hidden_data(doc, previous)
        state = previous.get("properties", {}).get("provisioningState", "Succeeded")
        if seconds > 0:
            op_id = str(uuid.uuid4())
            self._supersede(key, op_id)
            self._write_ops[op_id] = _WriteOp(key, self._clock() + seconds, by="another_writer")
            self._busy[key] = op_id
            state = "Updating"
        self._stamp(doc, previous["id"], state=state, keep_child_ids=False)
        self._gateways[key] = doc
        record["etag"] = doc["etag"]
        self._other_writes.append(record)

    def _route_put(self, request: Request) -> Response:
        body = self._json_body(request)
        key = self._gateway_key(request)
        with self._lock:
            self._settle()
            self._require_rg(request)
            previous = self._gateways.get(key)
            gateway_id = previous["id"] if previous else self._canonical_id(request)
            self._check_conflict(key)
            if isinstance(body, dict):
                body = backrefs.strip(body)  # read-only: ignored, as ARM does (arm_backrefs)
            val.validate_gateway(body, gateway_id, previous)
            doc = copy.deepcopy(body)
            doc.setdefault("location", (previous or {}).get("location"))
            if previous is not None:
                guid = previous.get("properties", {}).get("resourceGuid")
                doc.setdefault("properties", {}).setdefault("resourceGuid", guid)
            val.keep_hidden_data(doc, previous)
            self._stamp(doc, gateway_id, state="Updating", keep_child_ids=False)
            op_id = str(uuid.uuid4())
            op = self._write_op(key, request.effect)
            if op.touches_gateway:
                # Accepted even while another operation runs; that one ends Canceled.
                self._supersede(key, op_id)
                if self._commits(request.effect):
                    self._gateways[key] = doc
                elif previous is not None:
                    # Fails without taking the body: the old document ends Failed.
                    self._stamp(previous, gateway_id, state="Updating", keep_child_ids=True)
                self._busy[key] = op_id
            elif previous is not None:
                # Superseded by someone else's PUT of the old content: still a new ETag, as
                # every accepted PUT gives one (cli_ag_auth_cert_v1.json, findings (d)).
                state = str(previous.get("properties", {}).get("provisioningState", "Succeeded"))
                self._stamp(previous, gateway_id, state=state, keep_child_ids=True)
            self._write_ops[op_id] = op
            response_body = self._out(doc)
            remaining = op.done_at - self._clock()
        # Lower-case location segment, `operations` (not operationResults), same api-version as
        # the PUT (cli_ag_auth_cert_v1.json idx 9, cli_ag_root_cert_v2.json 05:25:58).
        location = str(doc.get("location") or "local").replace(" ", "").lower()
        op_url = (
            f"{self.url}/subscriptions/{request.params['sub']}/providers/Microsoft.Network/"
            f"locations/{location}/operations/{op_id}?api-version={self._api_version(request)}"
        )
        # Azure-AsyncOperation, no Location, no ETag (cli_ag_auth_cert_v1.json idx 9/11/13/15,
        # cli_ag_root_cert_v2.json 05:25:58; net_ag_backend_health_v2.json 03:08:56, whose
        # recorder keeps every header); Retry-After as recorded there (sandbox/arm_ops.py);
        # update 200, create 201 (java_ag_kv_sslcert_identity.json 06:13:42).
        headers = {
            "Azure-AsyncOperation": op_url,
            **self._retry_after_header(ops.PUT_RETRY_AFTER, remaining),
        }
        return Response(200 if previous else 201, response_body, headers)

    def _supersede(self, key: str, op_id: str) -> None:
        """A write accepted while another operation runs on the gateway cancels that operation
        (caller holds the lock). Its status becomes Canceled with the superseded code in
        `error.details` (sandbox.faults.superseded_error); its body stays overwritten."""
        old_id = self._busy.pop(key, None)
        old = self._write_ops.get(old_id) if old_id else None
        if old is None or old.status != "InProgress":
            return
        old.status = old.final = "Canceled"
        old.error = superseded_error(op_id)

    @staticmethod
    def _commits(effect: Effect | None) -> bool:
        return not isinstance(effect, LroEnd) or effect.commit

    def _write_op(self, key: str, effect: Effect | None) -> _WriteOp:
        """The operation a PUT starts; a fault may make it slow, failed or superseded."""
        if not isinstance(effect, LroEnd):
            return _WriteOp(key, self._clock() + self._lro_delay)
        delay = self._lro_delay if effect.seconds is None else effect.seconds
        error: dict[str, Any] | None = None
        if effect.code:
            error = {"code": effect.code, "message": effect.message or effect.code}
            if effect.details:
                error["details"] = [dict(d) for d in effect.details]
        # A superseded PUT never touches the gateway: the superseding writer owns it
        # (docs/sources.md#overlapping-writes).
        touches = effect.commit or effect.status == "Failed"
        return _WriteOp(
            key, self._clock() + delay, final=effect.status, error=error, touches_gateway=touches
        )

    def _check_conflict(self, key: str) -> None:
        """A write while another runs on the same gateway, in the 409 / 429 modes only
        (docs/sources.md#overlapping-writes); by default it is accepted and supersedes
        (_supersede)."""
        if key not in self._busy or self._conflict in {"supersede", "none"}:
            return
        op_id = self._busy[key]
        if self._conflict == "429":
            raise ArmError(
                429,
                "RetryableErrorDueToAnotherOperation",
                f"Operation PutApplicationGatewayOperation is blocked by operation {op_id}. "
                "Please retry later.",
                headers={"Retry-After": self._retry_after},
            )
        raise ArmError(
            409,
            "AnotherOperationInProgress",
            "Another operation on this or dependent resource is in progress. To retrieve status "
            f"of the operation use uri: {self.url}/subscriptions/{self.subscription_id}/providers/"
            f"Microsoft.Network/locations/local/operations/{op_id}.",
        )

    def _route_async_op(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            op = self._write_ops.get(request.params["op"].lower())
        if op is None:
            raise ArmError(404, "OperationNotFound", "The operation was not found.")
        # Exactly {"status": "InProgress"} / {"status": "Succeeded"}, 200
        # (cli_ag_root_cert_v2.json 05:26:09 / 05:26:20); Retry-After on InProgress only, backing
        # off as recorded (net_ag_backend_health_v2.json 03:08:57-03:16:36, sandbox/arm_ops.py).
        if op.status == "InProgress":
            with self._lock:
                recorded = ops.poll_retry_after(op.polls)
                op.polls += 1
            header = self._retry_after_header(recorded, op.done_at - self._clock())
            return Response(200, {"status": "InProgress"}, header)
        if op.error is not None:
            # What the SDK turns into HttpResponseError with error.code (docs/sources.md#arm-lro).
            return Response(200, {"status": op.status, "error": copy.deepcopy(op.error)})
        return Response(200, {"status": op.status})
