/**
 * Default look, injected once per page. Every rule is wrapped in `:where()` (zero
 * specificity), so a shop's own class or a CSS variable on any ancestor wins without
 * `!important`.
 */
export const CSS: string = `
:where(.rl-carousel){--rl-font:inherit;--rl-color:#1d2129;--rl-muted:#545a63;--rl-bg:transparent;--rl-card-bg:#fff;--rl-border:#d7dbe0;--rl-accent:#1f5fbf;--rl-focus:#1f5fbf;--rl-radius:10px;--rl-gap:16px;--rl-image-ratio:1/1;--rl-skeleton:#eceef1;font-family:var(--rl-font);color:var(--rl-color);background:var(--rl-bg);position:relative;min-width:0;max-width:100%}
:where(.rl-header){display:flex;align-items:center;justify-content:space-between;gap:8px;margin:0 0 12px}
:where(.rl-title){font-size:1.25rem;margin:0}
:where(.rl-controls){display:flex;gap:8px}
:where(.rl-button){font:inherit;display:inline-flex;align-items:center;justify-content:center;min-width:40px;min-height:40px;border:1px solid var(--rl-border);border-radius:999px;background:var(--rl-card-bg);color:var(--rl-color);cursor:pointer}
:where(.rl-button:disabled){opacity:.45;cursor:default}
:where(.rl-carousel) :where(button:focus-visible,a:focus-visible,[tabindex]:focus-visible){outline:3px solid var(--rl-focus);outline-offset:2px}
:where(.rl-viewport){display:grid;grid-auto-flow:column;grid-auto-columns:calc((100% - (var(--rl-per-view,4) - 1) * var(--rl-gap)) / var(--rl-per-view,4));gap:var(--rl-gap);overflow-x:auto;scroll-snap-type:x mandatory;scroll-behavior:smooth;scrollbar-width:none;padding:4px;margin:-4px;scroll-padding-inline:4px}
:where(.rl-viewport)::-webkit-scrollbar{display:none}
:where(.rl-grid){display:grid;grid-template-columns:repeat(var(--rl-per-view,4),minmax(0,1fr));gap:var(--rl-gap);list-style:none;margin:0;padding:0}
:where(.rl-card){scroll-snap-align:start;display:flex;flex-direction:column;gap:6px;min-width:0;background:var(--rl-card-bg);border:1px solid var(--rl-border);border-radius:var(--rl-radius);padding:10px;position:relative}
:where(.rl-card-link){color:inherit;text-decoration:none;font:inherit;background:none;border:0;padding:0;text-align:left;cursor:pointer}
:where(.rl-card-link)::after{content:"";position:absolute;inset:0;border-radius:var(--rl-radius)}
:where(.rl-carousel) :where(.rl-card-link:focus-visible){outline:none}
:where(.rl-carousel) :where(.rl-card-link:focus-visible)::after{outline:3px solid var(--rl-focus);outline-offset:-3px}
:where(.rl-card:hover){border-color:var(--rl-accent)}
:where(.rl-image){width:100%;aspect-ratio:var(--rl-image-ratio);object-fit:cover;border-radius:calc(var(--rl-radius) - 4px);background:var(--rl-skeleton);display:block}
:where(.rl-image-placeholder){display:flex;align-items:center;justify-content:center;color:var(--rl-muted)}
:where(.rl-item-title){font-weight:600;line-height:1.3;overflow:hidden;display:-webkit-box;-webkit-line-clamp:2;-webkit-box-orient:vertical}
:where(.rl-meta){font-size:.85rem;color:var(--rl-muted)}
:where(.rl-price){font-weight:700;color:var(--rl-color)}
:where(.rl-skeleton){background:var(--rl-skeleton);border-radius:6px;animation:rl-pulse 1.2s ease-in-out infinite}
:where(.rl-skeleton-line){height:14px}
:where(.rl-status){padding:16px;border:1px dashed var(--rl-border);border-radius:var(--rl-radius);display:flex;gap:12px;align-items:center;flex-wrap:wrap}
:where(.rl-visually-hidden){position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
@keyframes rl-pulse{50%{opacity:.55}}
@media (prefers-reduced-motion:reduce){:where(.rl-viewport){scroll-behavior:auto}:where(.rl-skeleton){animation:none}}
`;

const STYLE_ID = 'recsys-lite-widget-styles';

export function injectStyles(): void {
  if (typeof document === 'undefined' || document.getElementById(STYLE_ID)) return;
  const style = document.createElement('style');
  style.id = STYLE_ID;
  style.textContent = CSS;
  // first in <head>, so the shop's stylesheets that follow override it at equal specificity
  document.head.prepend(style);
}
