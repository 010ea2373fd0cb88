// The coupons of a campaign as CSV (RFC 4180), fetched a page of 10,000 at a time.

import type { Api } from "./api";
import { rfc3339Utc } from "./format";
import type { Coupon } from "./gen/coupon/v1/coupon_pb";

/** The largest page GetCampaign serves: the fewest round trips for a big campaign. */
const PAGE_SIZE = 10_000;

export const CSV_HEADER = ["code", "user_id", "issued_at"];

/**
 * One CSV cell. A cell starting with = + - @ (or a tab or carriage return) would be run
 * as a formula by spreadsheet programs — user ids come from end users — so it gets a
 * leading single quote, which spreadsheets show as text ("CSV injection"). Then RFC 4180:
 * a cell with a comma, double quote or line break is quoted, its quotes doubled.
 */
export function csvCell(value: string): string {
  const defused = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(defused) ? `"${defused.replace(/"/g, '""')}"` : defused;
}

export function csvRow(cells: string[]): string {
  return cells.map(csvCell).join(",") + "\r\n";
}

export function couponRow(coupon: Coupon): string {
  const issuedAt = coupon.issuedAt ? rfc3339Utc(coupon.issuedAt) : "";
  return csvRow([coupon.code, coupon.userId, issuedAt]);
}

/**
 * Every coupon of the campaign as one CSV text, page after page; `onProgress` hears how
 * many rows are in so far. The text starts with a UTF-8 byte order mark: without it,
 * Excel reads a CSV in the system's legacy code page and garbles the Hangul codes.
 */
export async function fetchCouponsCsv(
  api: Api,
  campaignId: string,
  onProgress: (rows: number) => void,
  signal?: AbortSignal,
): Promise<{ text: string; rows: number }> {
  const parts = ["\uFEFF", csvRow(CSV_HEADER)];
  let rows = 0;
  let pageToken = "";
  do {
    const page = await api.campaigns.getCampaign(
      { campaignId, pageSize: PAGE_SIZE, pageToken },
      { signal, timeoutMs: 60_000 },
    );
    for (const coupon of page.coupons) parts.push(couponRow(coupon));
    rows += page.coupons.length;
    onProgress(rows);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return { text: parts.join(""), rows };
}

/** Hands the text to the browser as a file download. */
export function saveFile(filename: string, text: string, type = "text/csv;charset=utf-8"): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  // Revoked later, not at once: the browser reads the blob after the click returns.
  window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
