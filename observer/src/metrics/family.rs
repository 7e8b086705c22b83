//! A metric family with bounded cardinality: at most `limit` series, flows beyond that counted
//! as refused, and series that name something deleted removed after a grace period. The
//! writer keeps its own index of the series (no lock); the shared family is locked only when
//! a series is created or removed, and by scrapes.

use std::{
    fmt,
    hash::{Hash, Hasher},
    sync::Arc,
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::{EncodeLabel as _, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder},
    metrics::{TypedMetric, counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use super::context::{Binding, Context, Live, Value};

/// The labels of a family that do not come from the context options.
pub(crate) trait FixedLabels:
    Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static
{
    /// Hubble puts the context labels before the family's own in some families, after them in
    /// others; following it keeps label order identical.
    const CONTEXT_FIRST: bool;

    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result;
}

/// Writes one label.
pub(crate) fn label(
    encoder: &mut LabelSetEncoder,
    name: &str,
    value: impl EncodeLabelValue,
) -> fmt::Result {
    (name, value).encode(encoder.encode_label())
}

/// One series' labels: the family's own and the context values.
#[derive(Clone, Debug)]
pub(crate) struct Series<K> {
    fixed: K,
    context: Box<[Value]>,
    /// The same for every series of the family; not part of equality.
    names: Arc<[&'static str]>,
}

impl<K: PartialEq> PartialEq for Series<K> {
    fn eq(&self, other: &Self) -> bool {
        self.fixed == other.fixed && self.context == other.context
    }
}

impl<K: Eq> Eq for Series<K> {}

impl<K: Hash> Hash for Series<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.fixed.hash(state);
        self.context.hash(state);
    }
}

impl<K: FixedLabels> EncodeLabelSet for Series<K> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        let context = |encoder: &mut LabelSetEncoder| {
            for (name, value) in self.names.iter().zip(self.context.iter()) {
                label(encoder, name, value)?;
            }
            Ok(())
        };
        if K::CONTEXT_FIRST {
            context(encoder)?;
            self.fixed.encode(encoder)
        } else {
            self.fixed.encode(encoder)?;
            context(encoder)
        }
    }
}

#[derive(Debug)]
struct SeriesState<M> {
    metric: M,
    bindings: Box<[Binding]>,
    /// When something the series names was found deleted.
    stale_since: Option<Instant>,
}

/// Counters shared by all families: refused flows and series per family.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bookkeeping {
    refused: Family<[(&'static str, &'static str); 1], Counter>,
    series: Family<[(&'static str, &'static str); 1], Gauge>,
}

impl Bookkeeping {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let b = Bookkeeping::default();
        registry.register(
            "metrics_series_refused",
            "Flows not counted in a metric family because it reached its series limit",
            b.refused.clone(),
        );
        registry.register(
            "metrics_series",
            "Series in a flow metric family",
            b.series.clone(),
        );
        b
    }
}

/// What to register a family as.
pub(crate) struct Descriptor {
    /// Registered name, without the prefix and without `_total` (the encoder adds it).
    pub name: &'static str,
    /// The exported name without the prefix, for the `family` label.
    pub exported: &'static str,
    pub help: &'static str,
    pub unit: Option<Unit>,
}

pub(crate) struct Capped<K, M> {
    family: Family<Series<K>, M, fn() -> M>,
    pub(crate) context: Context,
    limit: usize,
    index: foldhash::HashMap<Series<K>, SeriesState<M>>,
    refused: Counter,
    size: Gauge,
}

impl<K, M> Capped<K, M>
where
    K: FixedLabels,
    M: prometheus_client::encoding::EncodeMetric
        + TypedMetric
        + Clone
        + fmt::Debug
        + Send
        + Sync
        + 'static,
{
    pub(crate) fn register(
        registry: &mut Registry,
        descriptor: Descriptor,
        constructor: fn() -> M,
        context: Context,
        limit: usize,
        books: &Bookkeeping,
    ) -> Self {
        let family = Family::new_with_constructor(constructor);
        match descriptor.unit {
            Some(unit) => {
                registry.register_with_unit(descriptor.name, descriptor.help, unit, family.clone())
            }
            None => registry.register(descriptor.name, descriptor.help, family.clone()),
        }
        let key = [("family", descriptor.exported)];
        Capped {
            family,
            context,
            limit,
            index: Default::default(),
            refused: books.refused.get_or_create_owned(&key),
            size: books.series.get_or_create_owned(&key),
        }
    }

    /// The series' metric, created if needed; None when the family is full.
    pub(crate) fn get(
        &mut self,
        fixed: K,
        values: Box<[Value]>,
        bindings: Box<[Binding]>,
        live: &Live,
        now: Instant,
    ) -> Option<M> {
        let key = Series {
            fixed,
            context: values,
            names: self.context.names().clone(),
        };
        if let Some(s) = self.index.get(&key) {
            return Some(s.metric.clone());
        }
        if self.index.len() >= self.limit {
            return None;
        }
        let metric = self.family.get_or_create_owned(&key);
        // A series made from an endpoint that is already gone (an event still in flight) ages
        // like the others.
        let stale_since = (!live.all_exist(&bindings)).then_some(now);
        self.index.insert(
            key,
            SeriesState {
                metric: metric.clone(),
                bindings,
                stale_since,
            },
        );
        self.size.set(self.index.len() as i64);
        Some(metric)
    }

    /// Counts flows that found the family full.
    pub(crate) fn refused(&self) -> &Counter {
        &self.refused
    }

    /// Notes which series name something that no longer exists (and which exist again).
    pub(crate) fn mark(&mut self, live: &Live, now: Instant) {
        for s in self.index.values_mut() {
            if s.bindings.is_empty() {
                continue;
            }
            if live.all_exist(&s.bindings) {
                s.stale_since = None;
            } else if s.stale_since.is_none() {
                s.stale_since = Some(now);
            }
        }
    }

    /// Removes series stale for longer than `grace`; returns how many.
    pub(crate) fn expire(&mut self, now: Instant, grace: Duration) -> usize {
        let before = self.index.len();
        let family = &self.family;
        self.index.retain(|key, s| {
            let expired = s
                .stale_since
                .is_some_and(|since| now.saturating_duration_since(since) >= grace);
            if expired {
                family.remove(key);
            }
            !expired
        });
        let removed = before - self.index.len();
        if removed > 0 {
            self.size.set(self.index.len() as i64);
        }
        removed
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}
