// The Connect clients (generated from proto/coupon/v1/coupon.proto) and what their
// errors mean to a person.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { CampaignService, CouponService } from "./gen/coupon/v1/coupon_pb";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb";

export interface Api {
  campaigns: Client<typeof CampaignService>;
  coupons: Client<typeof CouponService>;
}

/** Ordinary calls give up after this; long-polls pass their own, longer deadline. */
export const CALL_TIMEOUT_MS = 15_000;

/**
 * Clients for the server that served this page (same origin: no CORS), speaking
 * Connect with JSON bodies. An empty token sends no Authorization header: a server
 * without an admin token serves admin calls on loopback only.
 */
export function connect(token: string): Api {
  const bearer: Interceptor = (next) => (req) => {
    if (token !== "") req.header.set("Authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: location.origin,
    useBinaryFormat: false,
    interceptors: [bearer],
    defaultTimeoutMs: CALL_TIMEOUT_MS,
  });
  return {
    campaigns: createClient(CampaignService, transport),
    coupons: createClient(CouponService, transport),
  };
}

/** What went wrong with a call, sorted by what the console does about it. */
export type Failure =
  | { kind: "auth"; message: string }
  | { kind: "field"; field: string; message: string }
  | { kind: "network"; message: string }
  | { kind: "aborted"; message: string }
  | { kind: "other"; message: string };

export function describe(err: unknown): Failure {
  const e = ConnectError.from(err);
  switch (e.code) {
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return { kind: "auth", message: "The server refused this admin token." };
    case Code.Canceled:
      return { kind: "aborted", message: "Cancelled." };
    case Code.InvalidArgument: {
      const field = invalidField(e);
      if (field) return { kind: "field", field, message: fieldMessage(e.rawMessage, field) };
      break;
    }
  }
  if (isNetworkFailure(e)) {
    return { kind: "network", message: "Cannot reach the server. Check the connection and try again." };
  }
  if (e.code === Code.DeadlineExceeded) {
    return { kind: "network", message: "The server took too long to answer. Try again." };
  }
  return { kind: "other", message: `${e.rawMessage || "Request failed"} (${Code[e.code]})` };
}

/** The proto field an INVALID_FIELD error names: its ErrorInfo, else "field: why". */
function invalidField(e: ConnectError): string | undefined {
  for (const info of e.findDetails(ErrorInfoSchema)) {
    const field = info.metadata["field"];
    if (info.reason === "INVALID_FIELD" && field) return field;
  }
  return /^([a-z_][a-z0-9_.]*): /.exec(e.rawMessage)?.[1];
}

/** "total_coupons: must be at least 1" → "must be at least 1": the field is beside it. */
function fieldMessage(raw: string, field: string): string {
  const prefix = `${field}: `;
  return raw.startsWith(prefix) ? raw.slice(prefix.length) : raw;
}

/** fetch() itself failed (server down, connection refused): not an answer from the server. */
function isNetworkFailure(e: ConnectError): boolean {
  return e.code === Code.Unknown && e.cause instanceof TypeError;
}
