//! Selector and filter flags → the GetFlowsRequest sent to the observer (or replayed over a
//! file), as Hubble's `getFlowsRequest` builds it.

use anyhow::{Context as _, anyhow};
use flowscope_model::filter::RequestError;
use flowscope_model::{FilterSet, GetFlowsRequest, Timestamp, parse_time};

use super::args::{DEFAULT_LAST, ObserveArgs};
use super::filters::{Lists, build_lists, parse_raw_filters};

/// The request and its compiled filters.
pub(crate) struct Plan {
    pub request: GetFlowsRequest,
    pub filters: FilterSet,
    pub lists: Lists,
}

/// Builds and validates the request. `now` anchors relative `--since`/`--until` values.
pub(crate) fn build(args: &ObserveArgs, now: Timestamp) -> anyhow::Result<Plan> {
    let input = args.input_file.is_some();
    // Reading a file never waits for more, as Hubble ignores --follow there.
    let follow = args.follow && !input;
    let first = args.first.is_some_and(|n| n > 0);

    let since = args
        .since
        .as_deref()
        .map(|s| parse_time(s, now).with_context(|| "--since"))
        .transpose()?;
    // As in Hubble, --until is dropped when following.
    let until = match args.until.as_deref() {
        Some(s) if !follow => Some(parse_time(s, now).with_context(|| "--until")?),
        _ => None,
    };

    let mut number = if first {
        args.first.unwrap_or(0)
    } else {
        args.last.unwrap_or(0)
    };
    if since.is_none() && until.is_none() && !first {
        if args.all {
            // --all is last = u64::MAX.
            number = u64::MAX;
        } else if number == 0 && !follow && !input {
            // A bare `observe` shows the last 20; counting should see everything stored.
            number = if args.aggregate_by.is_empty() {
                DEFAULT_LAST
            } else {
                u64::MAX
            };
        }
    }

    let mut lists = build_lists(&args.filters.args).map_err(|e| anyhow!(e))?;
    lists
        .whitelist
        .extend(parse_raw_filters("allowlist", &args.allowlist).map_err(|e| anyhow!(e))?);
    lists
        .blacklist
        .extend(parse_raw_filters("denylist", &args.denylist).map_err(|e| anyhow!(e))?);

    let request = GetFlowsRequest {
        number,
        first,
        follow,
        whitelist: lists.whitelist.clone(),
        blacklist: lists.blacklist.clone(),
        since,
        until,
        field_mask: (!args.field_mask.is_empty())
            .then(|| serde_json::Value::String(args.field_mask.join(","))),
        ..GetFlowsRequest::default()
    };
    if input && !args.field_mask.is_empty() {
        return Err(anyhow!(
            "--field-mask asks the observer to leave fields out; with --input-file there is no \
             observer (use -o json and jq to pick fields of a file)"
        ));
    }
    let filters = request.compile().map_err(|e| match e {
        RequestError::SinceAfterUntil { since, until } => {
            anyhow!("--since ({since}) is after --until ({until}): no flow can match")
        }
        RequestError::Filter(f) => anyhow!(
            "the filters cannot match ({}: {}); whitelist = filters given without --not, \
             blacklist = filters after --not, --allowlist and --denylist",
            f.path,
            f.problem
        ),
        RequestError::FieldMask(problem) => anyhow!("--field-mask: {problem}"),
        other => anyhow!("invalid request: {other}"),
    })?;
    Ok(Plan {
        request,
        filters,
        lists,
    })
}
