// "Try it": issue a coupon as some user, the way an app would — IssueCoupon, then
// long-poll GetIssueResult until the ticket is decided.

import { describe, type Api } from "./api";
import { h, setText, show, replaceChildren } from "./dom";
import { count, issueStatusLabel, localTime } from "./format";
import { IssueStatus, type GetIssueResultResponse } from "./gen/coupon/v1/coupon_pb";

/** How long the server may hold each poll while the ticket is pending. */
const WAIT_MS = 10_000;

export interface TryIt {
  el: HTMLElement;
  dispose(): void;
}

export function tryItPanel(api: Api, campaignId: string): TryIt {
  const user = h("input", {
    id: "tryit-user",
    type: "text",
    maxlength: 128,
    "data-testid": "tryit-user",
    placeholder: "e.g. 홍길동 or user-42",
  });
  const issue = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "tryit-issue" }, "Issue");
  const ticket = h("code", { class: "mono small", "data-testid": "tryit-ticket" });
  const status = h("span", { class: "badge", "data-testid": "tryit-status" });
  const detail = h("div", { class: "tryit-detail" });
  const error = h("p", { class: "alert alert-error", role: "alert", "data-testid": "tryit-error" });
  const outcome = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Ticket"),
    h("dd", {}, ticket),
    h("dt", {}, "Status"),
    h("dd", {}, status, detail),
  );
  show(outcome, false);
  show(error, false);
  let controller: AbortController | undefined;

  const showStatus = (answer: GetIssueResultResponse): void => {
    const label = issueStatusLabel(answer.status);
    setText(status, label.label);
    status.className = `badge badge-${label.key}`;
    status.dataset.status = label.key;
    if (answer.status === IssueStatus.PENDING) {
      const ahead = answer.position === undefined ? "" : ` · ${count(answer.position)} ahead`;
      replaceChildren(detail, h("span", { class: "muted small" }, `waiting for the decision${ahead}`));
    } else if (answer.coupon) {
      replaceChildren(
        detail,
        h("div", { class: "code", "data-testid": "tryit-code" }, answer.coupon.code),
        h("div", { class: "muted small" }, `issued ${localTime(answer.coupon.issuedAt, true)}`),
      );
    } else {
      replaceChildren(detail);
    }
  };

  const run = async (event: Event): Promise<void> => {
    event.preventDefault();
    controller?.abort();
    const current = (controller = new AbortController());
    const signal = current.signal;
    show(error, false);
    show(outcome, false);
    issue.disabled = true;
    try {
      const accepted = await api.coupons.issueCoupon({ campaignId, userId: user.value }, { signal });
      setText(ticket, accepted.ticketId);
      setText(status, "");
      replaceChildren(detail);
      show(outcome, true);
      let answer: GetIssueResultResponse;
      do {
        // The server answers at the latest when WAIT_MS ends; give the call more time.
        answer = await api.coupons.getIssueResult(
          { ticketId: accepted.ticketId, waitMs: WAIT_MS },
          { signal, timeoutMs: WAIT_MS + 10_000 },
        );
        showStatus(answer);
      } while (answer.status === IssueStatus.PENDING && !signal.aborted);
    } catch (err) {
      const failure = describe(err);
      if (failure.kind !== "aborted") {
        setText(error, failure.kind === "field" ? `${failure.field}: ${failure.message}` : failure.message);
        show(error, true);
      }
    } finally {
      if (controller === current) issue.disabled = false;
    }
  };

  const el = h(
    "form",
    { class: "card tryit", "data-testid": "tryit", onsubmit: (e) => void run(e) },
    h("div", { class: "card-head" }, h("h2", {}, "Try it")),
    h("p", { class: "muted small" }, "Issues a real coupon of this campaign to the user you name, as the app would."),
    h("div", { class: "inline" }, h("label", { for: "tryit-user", class: "sr-only" }, "User id"), user, issue),
    error,
    outcome,
  );
  return { el, dispose: () => controller?.abort() };
}
