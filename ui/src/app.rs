//! The page: top bar (namespace, filters, verdict, HTTP status, export), the service map, the
//! flow table with its details panel, and the status bar.

use std::sync::Arc;

use flowscope_model::{
    GetFlowsResponse,
    flow::{Endpoint, Flow, Verdict},
};
use leptos::prelude::*;
use wasm_bindgen::{JsCast as _, prelude::*};

use crate::engine::{
    self, ConnState, Handle, Signals, Stats, Transform, invalidate, restart, set_paused,
};
use crate::filters::{Direction, FilterEntry, Kind};
use crate::layout::{MapModel, fit};
use crate::mapdom::{MapDom, clicked};
use crate::rows::{Column, Selection, export_lines};
use crate::tabledom::{TableDom, clicked_seq};
use crate::url::ViewState;

/// Height of a table row in pixels; rows are virtual, so this must match the CSS.
const ROW_H: f64 = 24.0;
/// Rows rendered above and below the visible ones.
const OVERSCAN: usize = 8;

fn current_query() -> String {
    window().location().search().unwrap_or_default()
}

#[component]
pub fn App() -> impl IntoView {
    let (initial, problems) = ViewState::from_query(&current_query());
    let sig = Signals {
        state: RwSignal::new(initial),
        conn: RwSignal::new(ConnState::Connecting),
        stats: RwSignal::new(Stats::default()),
        rows: RwSignal::new(Arc::new(Vec::new())),
        paused: RwSignal::new(false),
        new_while_paused: RwSignal::new(0),
        map: RwSignal::new(Arc::new(MapModel::default())),
        namespaces: RwSignal::new(Vec::new()),
        transform: RwSignal::new((0.0, 0.0, 1.0)),
        details: RwSignal::new(None),
        map_size: RwSignal::new((0.0, 0.0)),
        auto_fit: RwSignal::new(true),
    };
    let eng = engine::new_engine();
    let notice = RwSignal::new(if problems.is_empty() {
        None
    } else {
        Some(format!("Ignored in the link: {}", problems.join("; ")))
    });

    // The URL follows the view, without adding history entries per click.
    Effect::new(move |_| {
        let query = sig.state.with(ViewState::to_query);
        if query != current_query()
            && let Ok(history) = window().history()
        {
            let path = window().location().pathname().unwrap_or_default();
            let _ =
                history.replace_state_with_url(&JsValue::NULL, "", Some(&format!("{path}{query}")));
        }
    });
    // New server filters or naming labels: a new graph and a new stream.
    let server_side = Memo::new(move |_| {
        sig.state
            .with(|s| (s.filters.clone(), s.name_labels.clone()))
    });
    Effect::new(move |_| {
        // Reading (not just tracking) the memo computes it, which subscribes it to the state.
        server_side.with(|_| ());
        restart(eng, sig);
    });
    // A different namespace or selection: redraw (and refit for a namespace) at once.
    let ns = Memo::new(move |_| sig.state.with(|s| s.namespace.clone()));
    let sel = Memo::new(move |_| sig.state.with(|s| s.selection.clone()));
    Effect::new(move |prev: Option<()>| {
        ns.with(|_| ());
        if prev.is_some() {
            sig.auto_fit.set(true);
        }
        invalidate(eng, sig, prev.is_some());
    });
    Effect::new(move |_| {
        sel.with(|_| ());
        invalidate(eng, sig, false);
    });
    engine::start_status_poll(eng, sig);

    view! {
        <div class="app">
            <TopBar sig=sig notice=notice />
            <div class="main">
                <ServiceMap sig=sig />
                <div class="lower">
                    <FlowTable sig=sig eng=eng />
                    <Details sig=sig />
                </div>
            </div>
            <StatusBar sig=sig />
        </div>
    }
}

#[component]
fn TopBar(sig: Signals, notice: RwSignal<Option<String>>) -> impl IntoView {
    let draft = RwSignal::new(String::new());
    let add_entry = move || {
        let text = draft.get_untracked();
        if text.trim().is_empty() {
            return;
        }
        match FilterEntry::parse(&text) {
            Ok(entry) => {
                sig.state.update(|s| {
                    if !s.filters.entries.contains(&entry) {
                        s.filters.entries.push(entry);
                    }
                });
                draft.set(String::new());
                notice.set(None);
            }
            Err(e) => notice.set(Some(e)),
        }
    };
    let export = move |_| {
        let rows = engine::shown_rows(sig);
        let text = export_lines(rows.iter());
        if let Err(e) = download("flows.json", &text) {
            notice.set(Some(format!("Export failed: {e:?}")));
        }
    };
    view! {
        <header class="topbar">
            <span class="brand">"flowscope"</span>
            <select
                class="namespace"
                data-test="namespace"
                on:change=move |ev| {
                    let v = event_target_value(&ev);
                    sig.state.update(|s| {
                        s.namespace = (!v.is_empty()).then_some(v);
                        s.selection = None;
                    });
                }
                prop:value=move || sig.state.with(|s| s.namespace.clone().unwrap_or_default())
            >
                <option value="">"All namespaces"</option>
                {move || {
                    let current = sig.state.with(|s| s.namespace.clone());
                    let mut list = sig.namespaces.get();
                    if let Some(c) = current
                        && !list.contains(&c)
                    {
                        list.push(c);
                    }
                    list.into_iter()
                        .map(|n| {
                            let selected = sig.state.with_untracked(|s| s.namespace.as_ref() == Some(&n));
                            view! { <option value=n.clone() selected=selected>{n.clone()}</option> }
                        })
                        .collect_view()
                }}
            </select>
            <div class="filters">
                {move || {
                    sig.state
                        .with(|s| s.filters.entries.clone())
                        .into_iter()
                        .map(|e| {
                            let text = e.to_string();
                            let remove = e.clone();
                            view! {
                                <span class="chip" data-test="filter-chip">
                                    {text}
                                    <button
                                        class="x"
                                        title="Remove"
                                        on:click=move |_| {
                                            sig.state.update(|s| s.filters.entries.retain(|x| *x != remove))
                                        }
                                    >
                                        "×"
                                    </button>
                                </span>
                            }
                        })
                        .collect_view()
                }}
                <input
                    class="filter-input"
                    data-test="filter-input"
                    placeholder="from:label=k8s:app=frontend · to:pod=default/my-api · ip=198.18.1.2 · !namespace=kube-system"
                    prop:value=move || draft.get()
                    on:input=move |ev| draft.set(event_target_value(&ev))
                    on:keydown=move |ev: web_sys::KeyboardEvent| {
                        if ev.key() == "Enter" {
                            add_entry();
                        }
                    }
                />
            </div>
            <select
                data-test="verdict"
                title="Verdict"
                on:change=move |ev| {
                    let v = event_target_value(&ev);
                    sig.state.update(|s| s.filters.verdict = Verdict::from_name(&v));
                }
                prop:value=move || {
                    sig.state.with(|s| s.filters.verdict.map(|v| v.as_str().to_string()).unwrap_or_default())
                }
            >
                <option value="">"Any verdict"</option>
                <option value="FORWARDED">"Forwarded"</option>
                <option value="DROPPED">"Dropped"</option>
                <option value="AUDIT">"Audit"</option>
                <option value="ERROR">"Error"</option>
            </select>
            <input
                class="http"
                data-test="http-status"
                placeholder="HTTP status (404, 5+)"
                prop:value=move || sig.state.with(|s| s.filters.http_status.clone().unwrap_or_default())
                on:change=move |ev| {
                    let v = event_target_value(&ev).trim().to_string();
                    sig.state.update(|s| s.filters.http_status = (!v.is_empty()).then_some(v));
                }
            />
            <button data-test="export" on:click=export title="Download the flows in the table as hubble observe -o jsonpb lines">
                "Export"
            </button>
            <Show when=move || notice.get().is_some()>
                <span class="notice" data-test="notice">
                    {move || notice.get().unwrap_or_default()}
                    <button class="x" on:click=move |_| notice.set(None)>"×"</button>
                </span>
            </Show>
        </header>
    }
}

/// Where a drag on the map started: pointer x, y and the map's transform then.
type DragStart = (f64, f64, Transform);

/// Starts a download of `text` as `name`.
fn download(name: &str, text: &str) -> Result<(), JsValue> {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("application/json");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let a: web_sys::HtmlAnchorElement = document().create_element("a")?.dyn_into()?;
    a.set_href(&url);
    a.set_download(name);
    a.click();
    web_sys::Url::revoke_object_url(&url)?;
    Ok(())
}

#[component]
fn ServiceMap(sig: Signals) -> impl IntoView {
    let container: NodeRef<leptos::html::Section> = NodeRef::new();
    // Drag state: pointer start, transform at start, moved beyond a click.
    let drag: StoredValue<Option<DragStart>> = StoredValue::new(None);
    let moved = StoredValue::new(false);

    // The map's size, for fitting; and the wheel listener, which must not be passive to
    // keep the page from scrolling while zooming.
    Effect::new(move |_| {
        let Some(el) = container.get() else { return };
        let rect = el.get_bounding_client_rect();
        sig.map_size.set((rect.width(), rect.height()));
        let target = el.clone();
        let on_wheel =
            Closure::<dyn FnMut(web_sys::WheelEvent)>::new(move |ev: web_sys::WheelEvent| {
                ev.prevent_default();
                let rect = target.get_bounding_client_rect();
                let (px, py) = (
                    f64::from(ev.client_x()) - rect.left(),
                    f64::from(ev.client_y()) - rect.top(),
                );
                let (tx, ty, k) = sig.transform.get_untracked();
                let k2 = (k * (-ev.delta_y() * 0.0015).exp()).clamp(0.05, 4.0);
                sig.transform
                    .set((px - (px - tx) * k2 / k, py - (py - ty) * k2 / k, k2));
            });
        let options = web_sys::AddEventListenerOptions::new();
        options.set_passive(false);
        let _ = el.add_event_listener_with_callback_and_add_event_listener_options(
            "wheel",
            on_wheel.as_ref().unchecked_ref(),
            &options,
        );
        // Lives as long as the page.
        on_wheel.forget();
    });
    let on_resize = move || {
        if let Some(el) = container.get_untracked() {
            let rect = el.get_bounding_client_rect();
            sig.map_size.set((rect.width(), rect.height()));
        }
    };
    let resize = window_event_listener(leptos::ev::resize, move |_| on_resize());
    on_cleanup(move || resize.remove());

    let zoom = move |factor: f64| {
        sig.auto_fit.set(false);
        let (w, h) = sig.map_size.get_untracked();
        let (tx, ty, k) = sig.transform.get_untracked();
        let k2 = (k * factor).clamp(0.05, 4.0);
        let (cx, cy) = (w / 2.0, h / 2.0);
        sig.transform
            .set((cx - (cx - tx) * k2 / k, cy - (cy - ty) * k2 / k, k2));
    };
    let fit_view = move |_| {
        let (w, h) = sig.map_size.get_untracked();
        let bounds = sig.map.with_untracked(|m| m.bounds);
        sig.auto_fit.set(true);
        sig.transform.set(fit(bounds, w, h));
    };
    let selected = move || sig.state.with(|s| s.selection.clone());
    // The nodes and edges are drawn by `MapDom`, which changes only what changed.
    let content: NodeRef<leptos::svg::G> = NodeRef::new();
    let dom: StoredValue<Option<MapDom>, LocalStorage> = StoredValue::new_local(None);
    Effect::new(move |_| {
        let map = sig.map.get();
        let selection = selected();
        let Some(g) = content.get() else { return };
        let root: &web_sys::Element = g.unchecked_ref();
        let done = dom
            .try_update_value(|d| {
                d.get_or_insert_with(|| MapDom::new(document(), root))
                    .update(&map, selection.as_ref())
            })
            .unwrap_or(true);
        if !done {
            draw_rest(dom, map, selection);
        }
    });
    let select = move |s: Selection| {
        sig.state.update(|st| {
            st.selection = if st.selection.as_ref() == Some(&s) {
                None
            } else {
                Some(s)
            };
        });
    };

    view! {
        <section class="map" node_ref=container data-test="map"
            on:pointerdown=move |ev: web_sys::PointerEvent| {
                drag.set_value(Some((f64::from(ev.client_x()), f64::from(ev.client_y()), sig.transform.get_untracked())));
                moved.set_value(false);
            }
            on:pointermove=move |ev: web_sys::PointerEvent| {
                if let Some((x0, y0, (tx, ty, k))) = drag.get_value() {
                    let (dx, dy) = (f64::from(ev.client_x()) - x0, f64::from(ev.client_y()) - y0);
                    if dx.abs() + dy.abs() > 4.0 && !moved.get_value() {
                        moved.set_value(true);
                        sig.auto_fit.set(false);
                    }
                    if moved.get_value() {
                        sig.transform.set((tx + dx, ty + dy, k));
                    }
                }
            }
            on:pointerup=move |_| drag.set_value(None)
            on:pointerleave=move |_| drag.set_value(None)
        >
            <svg class="canvas" on:click=move |ev: web_sys::MouseEvent| {
                // A click (not a drag) on a node or edge selects it; elsewhere, clears.
                if moved.get_value() {
                    return;
                }
                let hit = ev
                    .target()
                    .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                    .and_then(|el| clicked(&el));
                match hit {
                    Some(s) => select(s),
                    None => sig.state.update(|s| s.selection = None),
                }
            }>
                <defs>
                    {["forwarded", "dropped", "mixed", "audit"].map(|class| view! {
                        <marker id=format!("arrow-{class}") class=format!("arrow {class}") viewBox="0 0 10 10" refX="9" refY="5"
                            markerWidth="7" markerHeight="7" markerUnits="userSpaceOnUse" orient="auto-start-reverse">
                            <path d="M0,0 L10,5 L0,10 z" />
                        </marker>
                    })}
                </defs>
                <rect class="bg" x="0" y="0" width="100%" height="100%" />
                <g transform=move || {
                    let (tx, ty, k) = sig.transform.get();
                    format!("translate({tx:.1},{ty:.1}) scale({k:.4})")
                } class:labels-hidden=move || {
                    let k = sig.transform.get().2;
                    let crowded = sig.map.with(|m| m.edges.len() > 80);
                    k < 0.55 || (crowded && k < 1.5)
                } class:has-selection=move || selected().is_some()>
                    <g node_ref=content></g>
                </g>
            </svg>
            <div class="map-controls">
                <button title="Zoom in" on:click=move |_| zoom(1.25)>"+"</button>
                <button title="Zoom out" on:click=move |_| zoom(0.8)>"−"</button>
                <button title="Fit" data-test="fit" on:click=fit_view>"Fit"</button>
            </div>
            <SelectionInfo sig=sig />
            <Show when=move || sig.map.with(|m| m.nodes.is_empty())>
                <div class="empty">"Waiting for flows…"</div>
            </Show>
        </section>
    }
}

/// Draws what one update left out, a slice per animation frame, unless the map changed since.
fn draw_rest(
    dom: StoredValue<Option<MapDom>, LocalStorage>,
    map: Arc<MapModel>,
    selection: Option<Selection>,
) {
    request_animation_frame(move || {
        let done = dom
            .try_update_value(|d| match d {
                Some(d) if d.drawn(&map) => d.update(&map, selection.as_ref()),
                _ => true,
            })
            .unwrap_or(true);
        if !done {
            draw_rest(dom, map, selection);
        }
    });
}

/// What is selected on the map, with its numbers; and how to clear it.
#[component]
fn SelectionInfo(sig: Signals) -> impl IntoView {
    view! {
        {move || {
            let sel = sig.state.with(|s| s.selection.clone())?;
            let map = sig.map.get();
            let (title, detail) = match &sel {
                Selection::Node(id) => (
                    format!("Workload {id}"),
                    map.nodes.iter().find(|n| n.id == *id).map(|n| n.detail.clone()).unwrap_or_default(),
                ),
                Selection::Edge(id) => (
                    format!("Edge {id}"),
                    map.edges.iter().find(|e| e.id == *id).map(|e| format!("{}\n{}", e.label, e.detail)).unwrap_or_default(),
                ),
            };
            Some(view! {
                <div class="selection" data-test="selection">
                    <div class="title">{title}
                        <button class="x" title="Clear" on:click=move |_| sig.state.update(|s| s.selection = None)>"×"</button>
                    </div>
                    <pre>{detail}</pre>
                    <div class="hint">"The table shows this selection's flows."</div>
                </div>
            })
        }}
    }
}

#[component]
fn FlowTable(sig: Signals, eng: Handle) -> impl IntoView {
    let body: NodeRef<leptos::html::Div> = NodeRef::new();
    let scroll_top = RwSignal::new(0.0f64);
    let viewport = RwSignal::new(400.0f64);
    let chooser = RwSignal::new(false);
    let columns = move || sig.state.with(|s| s.columns.clone());
    let template = move || {
        columns()
            .iter()
            .map(|c| c.width())
            .collect::<Vec<_>>()
            .join(" ")
    };
    Effect::new(move |_| {
        if let Some(el) = body.get() {
            viewport.set(f64::from(el.client_height()));
        }
    });
    // Rows arriving above keep what the reader looks at in place: once scrolled down, the
    // view follows the row at its top instead of the newest row (hubble-ui #837).
    let anchor: StoredValue<Option<(u64, f64)>> = StoredValue::new(None);
    Effect::new(move |_| {
        let rows = sig.rows.get();
        let Some(el) = body.get_untracked() else {
            return;
        };
        if let Some((seq, offset)) = anchor.get_value()
            && let Some(i) = rows.iter().position(|r| r.seq == seq)
        {
            let top = i as f64 * ROW_H + offset;
            if (top - f64::from(el.scroll_top())).abs() >= 1.0 {
                el.set_scroll_top(top as i32);
                scroll_top.set(top);
            }
        }
        anchor.set_value(anchor_of(&rows, f64::from(el.scroll_top())));
    });
    let visible = move || {
        let rows = sig.rows.get();
        let first = ((scroll_top.get() / ROW_H) as usize).saturating_sub(OVERSCAN);
        let count = (viewport.get() / ROW_H).ceil() as usize + 2 * OVERSCAN;
        let end = (first + count).min(rows.len());
        let first = first.min(end);
        (first, rows.len(), rows[first..end].to_vec())
    };
    let slice = Memo::new(move |_| {
        let (first, total, rows) = visible();
        (
            first,
            total,
            rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            rows,
        )
    });
    // The visible rows are drawn by `TableDom` into a pool of reused elements.
    let list: NodeRef<leptos::html::Div> = NodeRef::new();
    let dom: StoredValue<Option<TableDom>, LocalStorage> = StoredValue::new_local(None);
    Effect::new(move |_| {
        let rows = slice.with(|s| s.3.clone());
        let cols = columns();
        let open = sig.details.with(|d| d.as_ref().map(|r| r.seq));
        let Some(el) = list.get() else { return };
        dom.update_value(|d| {
            d.get_or_insert_with(|| TableDom::new(document(), el.into()))
                .render(&rows, &cols, open);
        });
    });
    let toggle_pause = move |_| {
        let paused = !sig.paused.get_untracked();
        set_paused(eng, sig, paused);
    };
    view! {
        <section class="table" data-test="table">
            <div class="table-tools">
                <button data-test="pause" class:active=move || sig.paused.get() on:click=toggle_pause>
                    {move || if sig.paused.get() {
                        format!("Resume ({} new)", sig.new_while_paused.get())
                    } else {
                        "Pause".to_string()
                    }}
                </button>
                <span class="count" data-test="row-count">
                    {move || format!("{} flows", sig.rows.with(|r| r.len()))}
                </span>
                <div class="chooser">
                    <button data-test="columns" on:click=move |_| chooser.update(|c| *c = !*c)>"Columns"</button>
                    <Show when=move || chooser.get()>
                        <div class="chooser-menu" data-test="columns-menu">
                            {Column::ALL.into_iter().map(|c| view! {
                                <label>
                                    <input type="checkbox" data-column=c.key()
                                        prop:checked=move || sig.state.with(|s| s.columns.contains(&c))
                                        on:change=move |_| sig.state.update(|s| {
                                            if s.columns.contains(&c) {
                                                if s.columns.len() > 1 {
                                                    s.columns.retain(|x| *x != c);
                                                }
                                            } else {
                                                let mut cols = s.columns.clone();
                                                cols.push(c);
                                                s.columns = Column::ALL.into_iter().filter(|x| cols.contains(x)).collect();
                                            }
                                        }) />
                                    {c.title()}
                                </label>
                            }).collect_view()}
                        </div>
                    </Show>
                </div>
            </div>
            <div class="thead" style:grid-template-columns=template>
                {move || columns().into_iter().map(|c| view! { <div class="th" data-column=c.key()>{c.title()}</div> }).collect_view()}
            </div>
            <div class="tbody" node_ref=body on:click=move |ev: web_sys::MouseEvent| {
                let seq = ev
                    .target()
                    .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                    .and_then(|el| clicked_seq(&el));
                if let Some(seq) = seq {
                    let row = slice.with_untracked(|s| s.3.iter().find(|r| r.seq == seq).cloned());
                    sig.details.set(row);
                }
            } on:scroll=move |_| {
                if let Some(el) = body.get_untracked() {
                    let top = f64::from(el.scroll_top());
                    scroll_top.set(top);
                    viewport.set(f64::from(el.client_height()));
                    anchor.set_value(sig.rows.with_untracked(|rows| anchor_of(rows, top)));
                }
            }>
                <div style:height=move || format!("{}px", slice.with(|s| s.0) as f64 * ROW_H)></div>
                <div class="rows" node_ref=list></div>
                <div style:height=move || {
                    let (first, total, seqs, _) = slice.get();
                    format!("{}px", (total.saturating_sub(first + seqs.len())) as f64 * ROW_H)
                }></div>
            </div>
        </section>
    }
}

/// The row at the top of the view and how far into it the view starts, once scrolled away
/// from the newest rows; at the top the view follows new rows.
fn anchor_of(rows: &[Arc<crate::rows::Row>], scroll_top: f64) -> Option<(u64, f64)> {
    if scroll_top < ROW_H {
        return None;
    }
    let i = (scroll_top / ROW_H) as usize;
    rows.get(i).map(|r| (r.seq, scroll_top - i as f64 * ROW_H))
}

/// Adds a filter entry (from the details panel).
fn add_filter(sig: Signals, entry: FilterEntry) {
    sig.state.update(|s| {
        if !s.filters.entries.contains(&entry) {
            s.filters.entries.push(entry);
        }
    });
}

fn endpoint_view(
    sig: Signals,
    title: &'static str,
    ep: Option<Endpoint>,
    ip: String,
    dir: Direction,
) -> impl IntoView {
    let ep = ep.unwrap_or_default();
    let pod = (!ep.pod_name.is_empty()).then(|| format!("{}/{}", ep.namespace, ep.pod_name));
    let ns = (!ep.namespace.is_empty()).then(|| ep.namespace.clone());
    let arrow = if dir == Direction::From { "from" } else { "to" };
    view! {
        <div class="endpoint">
            <h4>{title}</h4>
            <dl>
                {pod.map(|p| {
                    let value = p.clone();
                    view! {
                        <dt>"Pod"</dt>
                        <dd><button class="chip filter" data-test="detail-pod" title=format!("Filter {arrow} this pod")
                            on:click=move |_| add_filter(sig, FilterEntry::new(dir, Kind::Pod, value.clone()))>{p}</button></dd>
                    }
                })}
                {ns.map(|n| {
                    let value = n.clone();
                    view! {
                        <dt>"Namespace"</dt>
                        <dd><button class="chip filter" title=format!("Filter {arrow} this namespace")
                            on:click=move |_| add_filter(sig, FilterEntry::new(dir, Kind::Namespace, value.clone()))>{n}</button></dd>
                    }
                })}
                {(!ip.is_empty()).then(|| {
                    let value = ip.clone();
                    view! {
                        <dt>"IP"</dt>
                        <dd><button class="chip filter" title=format!("Filter {arrow} this address")
                            on:click=move |_| add_filter(sig, FilterEntry::new(dir, Kind::Ip, value.clone()))>{ip.clone()}</button></dd>
                    }
                })}
                <dt>"Identity"</dt>
                <dd>{ep.identity.to_string()}</dd>
                <dt>"Labels"</dt>
                <dd class="labels">
                    {ep.labels.into_iter().map(|l| {
                        let value = l.clone();
                        view! {
                            <button class="chip filter" data-test="detail-label" title=format!("Filter {arrow} this label")
                                on:click=move |_| add_filter(sig, FilterEntry::new(dir, Kind::Label, value.clone()))>{l}</button>
                        }
                    }).collect_view()}
                </dd>
            </dl>
        </div>
    }
}

#[component]
fn Details(sig: Signals) -> impl IntoView {
    view! {
        {move || {
            let row = sig.details.get()?;
            let flow: Flow = serde_json::from_str::<GetFlowsResponse>(&row.line)
                .ok()
                .and_then(|r| r.flow().cloned())
                .unwrap_or_default();
            let (src_ip, dst_ip) = flow
                .ip
                .as_ref()
                .map(|ip| (ip.source.clone(), ip.destination.clone()))
                .unwrap_or_default();
            let fields: Vec<(&str, String)> = [
                ("Time", row.cell(Column::Time).to_string()),
                ("Verdict", flow.verdict.as_str().to_string()),
                ("Drop reason", row.cell(Column::DropReason).to_string()),
                ("Direction", row.cell(Column::Direction).to_string()),
                ("Event type", flow.event_type.map(|t| format!("{} / {}", t.event_type, t.sub_type)).unwrap_or_default()),
                ("Port", row.cell(Column::Port).to_string()),
                ("TCP flags", row.cell(Column::TcpFlags).to_string()),
                ("L7", row.cell(Column::L7).to_string()),
                ("Policy", row.cell(Column::Policy).to_string()),
                ("Node", row.cell(Column::Node).to_string()),
                ("Summary", flow.summary.clone()),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
            let raw = serde_json::from_str::<serde_json::Value>(&row.line)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_default();
            Some(view! {
                <aside class="details" data-test="details">
                    <div class="title">
                        "Flow details"
                        <button class="x" data-test="details-close" on:click=move |_| sig.details.set(None)>"×"</button>
                    </div>
                    <dl class="fields">
                        {fields.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd class=format!("f-{}", k.to_lowercase().replace(' ', "-"))>{v}</dd> }).collect_view()}
                    </dl>
                    {endpoint_view(sig, "Source", flow.source.clone(), src_ip, Direction::From)}
                    {endpoint_view(sig, "Destination", flow.destination.clone(), dst_ip, Direction::To)}
                    <details>
                        <summary>"JSON"</summary>
                        <pre class="raw">{raw}</pre>
                    </details>
                </aside>
            })
        }}
    }
}

#[component]
fn StatusBar(sig: Signals) -> impl IntoView {
    view! {
        <footer class="statusbar" data-test="status">
            {move || {
                let (class, text) = match sig.conn.get() {
                    ConnState::Connecting => ("connecting", "Connecting…".to_string()),
                    ConnState::Open => ("open", "Connected".to_string()),
                    ConnState::Closed(r) => ("closed", format!("Disconnected: {r}; retrying")),
                    ConnState::Refused(r) => ("refused", format!("Request refused: {r}")),
                };
                view! { <span class=format!("conn {class}") data-test="conn" data-state=class>{text}</span> }
            }}
            {move || {
                let s = sig.stats.get();
                let server = s.server_rate.map(|r| format!(" (observer {r:.1}/s)")).unwrap_or_default();
                let nodes = format!(
                    "nodes: {} connected, {} unavailable",
                    s.nodes_connected.len(),
                    s.nodes_unavailable.len()
                );
                let nodes_title = format!(
                    "connected: {}\nunavailable: {}",
                    s.nodes_connected.join(", "),
                    s.nodes_unavailable.join(", ")
                );
                view! {
                    <span data-test="rate">{format!("{:.1} flows/s{server}", s.flows_per_sec)}</span>
                    <span data-test="lost" class:warn={s.lost + s.ui_dropped > 0}>
                        {format!("lost events: {}", s.lost)}
                        {(s.ui_dropped > 0).then(|| format!(" (+{} dropped by the UI)", s.ui_dropped))}
                    </span>
                    <span data-test="nodes" title=nodes_title>{nodes}</span>
                    <span>{format!("map: {} workloads, {} edges", s.graph_nodes, s.graph_edges)}
                        {(s.evicted > 0).then(|| format!(" ({} evicted)", s.evicted))}</span>
                    <span>{format!("{} rows", s.rows)}</span>
                }
            }}
        </footer>
    }
}
