// The creation form. The server validates; its INVALID_FIELD errors are shown next to
// the field they name (an element with data-field-error="<proto field>").

import { describe } from "./api";
import { h, setText, show } from "./dom";
import { datetimeLocalValue, localZone, timestampAt } from "./format";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { CodeAlphabet, type Campaign, type CreateCampaignRequestSchema } from "./gen/coupon/v1/coupon_pb";
import type { View, ViewContext } from "./view";

type CreateCampaignRequestInit = MessageInitShape<typeof CreateCampaignRequestSchema>;

/** Fields the form shows errors for, by proto field name. */
const FIELDS = ["name", "total_coupons", "starts_at", "code_alphabet", "request_id"] as const;
type Field = (typeof FIELDS)[number];

export function createView(ctx: ViewContext, onCreated: (campaign: Campaign) => void): View {
  const name = h("input", {
    id: "create-name",
    type: "text",
    maxlength: 200,
    "data-testid": "create-name",
    placeholder: "e.g. 블랙프라이데이 10,000명 선착순",
  });
  const total = h("input", {
    id: "create-total",
    type: "number",
    inputmode: "numeric",
    step: 1,
    "data-testid": "create-total",
    placeholder: "10000",
  });
  // step=1: starts to the second. The form is `novalidate`, so the server judges values.
  const start = h("input", { id: "create-start", type: "datetime-local", step: 1, "data-testid": "create-start" });
  const alphabet = h(
    "select",
    { id: "create-alphabet", "data-testid": "create-alphabet" },
    h("option", { value: "readable" }, "Readable — 140 syllables + digits"),
    h("option", { value: "full" }, "Full — all 11,172 syllables + digits"),
  );
  const requestId = h("input", {
    id: "create-request-id",
    type: "text",
    maxlength: 128,
    "data-testid": "create-request-id",
    placeholder: "optional, e.g. a UUID",
  });
  const submit = h(
    "button",
    { type: "submit", class: "btn btn-primary", "data-testid": "create-submit" },
    "Create campaign",
  );
  const formError = h("p", { class: "alert alert-error", role: "alert", "data-testid": "create-error" });
  const result = h("p", { class: "alert alert-ok", role: "status", "data-testid": "create-result" });
  const fieldErrors = new Map<Field, HTMLElement>(
    FIELDS.map((f) => [f, h("p", { class: "field-error", "data-field-error": f, role: "alert" })]),
  );

  const clearErrors = (): void => {
    fieldErrors.forEach((el) => show(el, false));
    show(formError, false);
  };
  const showError = (field: string | undefined, message: string): void => {
    const el = field ? fieldErrors.get(field as Field) : undefined;
    const target = el ?? formError;
    setText(target, el || !field ? message : `${field}: ${message}`);
    show(target, true);
  };
  const reset = (): void => {
    name.value = "";
    total.value = "";
    requestId.value = "";
    start.value = datetimeLocalValue(Date.now() + 60_000);
  };

  const onSubmit = async (event: Event): Promise<void> => {
    event.preventDefault();
    clearErrors();
    show(result, false);
    const request = readForm();
    if ("field" in request) return showError(request.field, request.message);
    submit.disabled = true;
    try {
      const { campaign } = await ctx.api.campaigns.createCampaign(request);
      if (!campaign) throw new Error("the server answered without a campaign");
      result.replaceChildren("Created ", h("a", { href: ctx.hrefFor(campaign.id) }, campaign.name), ".");
      show(result, true);
      reset();
      onCreated(campaign);
    } catch (err) {
      const failure = describe(err);
      if (failure.kind === "auth") return ctx.onAuthFailure(failure.message);
      showError(failure.kind === "field" ? failure.field : undefined, failure.message);
    } finally {
      submit.disabled = false;
    }
  };

  /** The request, or what the browser can already tell is missing. */
  const readForm = (): CreateCampaignRequestInit | { field: Field; message: string } => {
    const totalText = total.value.trim();
    if (!/^-?\d+$/.test(totalText)) return { field: "total_coupons", message: "enter a whole number" };
    const startsAt = new Date(start.value); // no offset in the value: local time
    if (start.value === "" || Number.isNaN(startsAt.getTime()))
      return { field: "starts_at", message: "choose a start date and time" };
    return {
      name: name.value,
      totalCoupons: BigInt(totalText),
      startsAt: timestampAt(startsAt.getTime()),
      codeAlphabet: alphabet.value === "full" ? CodeAlphabet.FULL : CodeAlphabet.READABLE,
      requestId: requestId.value.trim(),
    };
  };

  // Editing a field hides its error.
  const inputs: Record<Field, HTMLElement> = {
    name,
    total_coupons: total,
    starts_at: start,
    code_alphabet: alphabet,
    request_id: requestId,
  };
  for (const f of FIELDS) inputs[f].addEventListener("input", () => show(fieldErrors.get(f)!, false));
  reset();
  clearErrors();
  show(result, false);

  const field = (label: string, input: HTMLElement, f: Field, hint?: string, wide = false): HTMLElement =>
    h(
      "div",
      { class: wide ? "field span-2" : "field" },
      h("label", { for: input.id }, label),
      input,
      hint ? h("p", { class: "hint" }, hint) : null,
      fieldErrors.get(f)!,
    );

  const el = h(
    "form",
    { class: "card create", novalidate: true, "data-testid": "create-form", onsubmit: (e) => void onSubmit(e) },
    h("div", { class: "card-head" }, h("h2", {}, "New campaign")),
    h(
      "div",
      { class: "grid" },
      field("Name", name, "name", undefined, true),
      field("Total coupons", total, "total_coupons"),
      field("Starts at", start, "starts_at", `Your local time (${localZone()}).`),
      field("Code alphabet", alphabet, "code_alphabet", "Readable codes are easy to read aloud and type.", true),
      field("Request id", requestId, "request_id", "Retrying with the same id never creates a second campaign.", true),
    ),
    formError,
    result,
    h("div", { class: "actions" }, submit),
  );
  return { el, dispose: () => undefined };
}
