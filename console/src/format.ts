// How values are shown: numbers, local times, countdowns, states and alphabets.

import { timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { CampaignState, CodeAlphabet, IssueStatus } from "./gen/coupon/v1/coupon_pb";

const integer = new Intl.NumberFormat("en-US");

export function count(n: bigint | number): string {
  return integer.format(n);
}

/** Milliseconds since the epoch, truncated (not rounded) to the millisecond. */
export function epochMs(ts: Timestamp): number {
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
}

export function timestampAt(ms: number): Timestamp {
  return timestampFromMs(ms);
}

const pad = (n: number, width = 2): string => String(n).padStart(width, "0");

/** RFC 3339 in UTC with milliseconds, e.g. 2026-12-01T10:00:00.123Z (the CSV's form). */
export function rfc3339Utc(ts: Timestamp): string {
  return new Date(epochMs(ts)).toISOString();
}

/** Local wall time, e.g. 2026-12-01 19:00:05; with `ms`, .123 is appended. */
export function localTime(ts: Timestamp | undefined, ms = false): string {
  if (!ts) return "—";
  const d = new Date(epochMs(ts));
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `${day} ${time}${ms ? `.${pad(d.getMilliseconds(), 3)}` : ""}`;
}

/** The browser's offset from UTC, e.g. UTC+09:00: the form's start is in this zone. */
export function localZone(): string {
  const offset = -new Date().getTimezoneOffset();
  const sign = offset < 0 ? "-" : "+";
  const abs = Math.abs(offset);
  return `UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** The value a `datetime-local` input takes for this instant, to the second. */
export function datetimeLocalValue(ms: number): string {
  const d = new Date(ms);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** A countdown such as "2d 03:04:05" or "04:05"; never negative. */
export function countdown(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const clock = hours || days ? `${pad(hours)}:${pad(minutes)}:${pad(seconds)}` : `${pad(minutes)}:${pad(seconds)}`;
  return days ? `${days}d ${clock}` : clock;
}

export function rate(perSecond: number | undefined): string {
  if (perSecond === undefined) return "—";
  return perSecond >= 100 ? integer.format(Math.round(perSecond)) : perSecond.toFixed(1);
}

export interface StateLabel {
  key: string; // for CSS and tests: scheduled, live, sold-out
  label: string;
}

export function stateLabel(state: CampaignState): StateLabel {
  switch (state) {
    case CampaignState.SCHEDULED:
      return { key: "scheduled", label: "Scheduled" };
    case CampaignState.LIVE:
      return { key: "live", label: "Live" };
    case CampaignState.SOLD_OUT:
      return { key: "sold-out", label: "Sold out" };
    default:
      return { key: "unknown", label: "Unknown" };
  }
}

export function alphabetLabel(alphabet: CodeAlphabet): string {
  switch (alphabet) {
    case CodeAlphabet.READABLE:
      return "Readable";
    case CodeAlphabet.FULL:
      return "Full";
    default:
      return "—";
  }
}

export function issueStatusLabel(status: IssueStatus): StateLabel {
  switch (status) {
    case IssueStatus.PENDING:
      return { key: "pending", label: "PENDING" };
    case IssueStatus.ISSUED:
      return { key: "issued", label: "ISSUED" };
    case IssueStatus.SOLD_OUT:
      return { key: "sold-out", label: "SOLD_OUT" };
    case IssueStatus.NOT_STARTED:
      return { key: "not-started", label: "NOT_STARTED" };
    case IssueStatus.ALREADY_ISSUED:
      return { key: "already-issued", label: "ALREADY_ISSUED" };
    default:
      return { key: "unknown", label: "UNKNOWN" };
  }
}
