const formats = new Map<string, Intl.NumberFormat>();

/** A price in the shop's currency and the shopper's (or a given) locale; '' when unknown. */
export function formatPrice(price: number | null | undefined, locale?: string, currency = 'USD'): string {
  if (price === null || price === undefined || !Number.isFinite(price)) return '';
  const key = `${locale ?? ''}|${currency}`;
  let format = formats.get(key);
  if (!format) {
    try {
      format = new Intl.NumberFormat(locale, { style: 'currency', currency });
    } catch {
      // an unknown currency code should cost the price its symbol, not the page its carousel
      format = new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    }
    formats.set(key, format);
  }
  return format.format(price);
}
