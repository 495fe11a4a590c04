//! Generated names on real stores: every table an accepted name creates lives in one directory under
//! its namespace's location, on local disk and on S3, reads back what was written, and is dropped
//! without touching its neighbours; and 10,000 generated names, each given the location a table of
//! that name would get, put an object there on the real store that lists back directly under the
//! namespace's directory. (The library's property test checks the name-to-directory mapping itself.)

use std::collections::{BTreeMap, BTreeSet};

use floe::{At, Namespace, TableName, WriteOptions};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::both_backends;
use crate::support::*;

/// Accepted names drawn from every Unicode scalar value, plus the spellings that tempt a path
/// mapping: dots, percent escapes, encoded separators, reserved words.
fn generated_names(count: usize, seed: u8) -> Vec<String> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    );
    let strategy = proptest::collection::vec(proptest::char::any(), 1..24)
        .prop_map(|c| c.into_iter().collect::<String>());
    let mut names: BTreeSet<String> = [
        "%2F", "%2e%2e", "=2F", "a=2Eb", "con", "NUL", "~", "-", "_", "'quoted'", "a b", "é", "名前",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    while names.len() < count {
        let name = strategy.new_tree(&mut runner).unwrap().current();
        if floe::catalog::names::validate_name("table", &name).is_ok() {
            names.insert(name);
        }
    }
    names.into_iter().collect()
}

both_backends!(
    generated_names_stay_inside_their_namespace_location,
    |ctx: Ctx| async move {
        let warehouse = ctx.floe.warehouse().uri();
        let names = generated_names(60, 7);
        // Two namespaces: the test's own, and one with an odd name.
        let other_ns = Namespace::new([format!("{} ns é%2F", ctx.ns)]).unwrap();
        ctx.floe.create_namespace(&other_ns).await.unwrap();
        let mut namespace_dirs: BTreeMap<Namespace, BTreeSet<String>> = BTreeMap::new();
        let mut tables = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let ns = if i % 2 == 0 {
                ctx.ns.clone()
            } else {
                other_ns.clone()
            };
            let t = TableName::new(ns.clone(), name.clone()).unwrap();
            ctx.create_events_table(&t, &[]).await;
            ctx.floe
                .append(
                    &t,
                    stream(vec![events(i as i64..i as i64 + 1)]),
                    &WriteOptions::default(),
                )
                .await
                .unwrap();
            let table = ctx.floe.load_table(&t).await.unwrap();
            // WAREHOUSE/NAMESPACE_DIR/TABLE_DIR, each one plain path segment.
            let rest = table
                .location()
                .strip_prefix(&format!("{warehouse}/"))
                .unwrap_or_else(|| panic!("{name:?}: {} is outside {warehouse}", table.location()));
            let segments: Vec<&str> = rest.split('/').collect();
            assert_eq!(segments.len(), 2, "{name:?}: {rest}");
            for s in &segments {
                assert!(
                    !s.is_empty()
                        && *s != "."
                        && *s != ".."
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                    "{name:?}: segment {s:?}"
                );
            }
            namespace_dirs
                .entry(ns)
                .or_default()
                .insert(segments[0].to_string());
            tables.push((t, table.location().to_string(), i as i64));
        }
        // One directory per namespace, a different one for each.
        assert!(
            namespace_dirs.values().all(|d| d.len() == 1),
            "{namespace_dirs:?}"
        );
        let dirs: BTreeSet<_> = namespace_dirs.values().flatten().collect();
        assert_eq!(dirs.len(), 2, "{namespace_dirs:?}");
        // Every table reads its row back, and its files are all under its own location.
        let locations: BTreeSet<&str> = tables.iter().map(|(_, l, _)| l.as_str()).collect();
        assert_eq!(locations.len(), tables.len(), "two tables share a location");
        for (t, location, id) in &tables {
            assert_eq!(ids(&ctx.floe, t, At::Current).await, vec![*id], "{t}");
            for f in referenced(&ctx, t).await {
                assert!(f.starts_with(&format!("{location}/")), "{t}: {f}");
            }
        }
        // Dropping one with purge removes its files and nobody else's.
        let (victim, location, _) = &tables[1];
        let before: BTreeMap<&str, BTreeSet<String>> = {
            let mut m = BTreeMap::new();
            for (t, l, _) in &tables {
                m.insert(l.as_str(), stored(&ctx, t).await);
            }
            m
        };
        ctx.floe.drop_table(victim, true).await.unwrap();
        assert!(
            ctx.floe
                .storage()
                .list(&format!("{location}/"))
                .await
                .unwrap()
                .is_empty(),
            "{victim}: files left after purge"
        );
        for (t, l, _) in tables.iter().filter(|(t, _, _)| t != victim) {
            assert_eq!(stored(&ctx, t).await, before[l.as_str()], "{t}");
        }
    }
);

both_backends!(
    ten_thousand_generated_names_map_inside_their_namespace_on_the_store,
    |ctx: Ctx| async move {
        use futures::{StreamExt, TryStreamExt};
        let warehouse = ctx.floe.warehouse().uri();
        let ns = Namespace::new([format!("{} names é%2F", ctx.ns)]).unwrap();
        let names = generated_names(10_000, 11);
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        let mut namespace_dir = None;
        for name in &names {
            let t = TableName::new(ns.clone(), name.clone()).unwrap();
            let location = ctx.floe.new_table_location(&t);
            let rest = location
                .strip_prefix(&format!("{warehouse}/"))
                .unwrap_or_else(|| panic!("{name:?}: {location} is outside {warehouse}"));
            let segments: Vec<&str> = rest.split('/').collect();
            assert_eq!(segments.len(), 2, "{name:?}: {rest}");
            assert!(
                segments.iter().all(|s| !s.is_empty()
                    && *s != "."
                    && *s != ".."
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b))),
                "{name:?}: {rest}"
            );
            assert_eq!(
                namespace_dir.get_or_insert_with(|| segments[0].to_string()),
                segments[0]
            );
            assert!(
                expected
                    .insert(format!("{location}/probe"), name.clone())
                    .is_none(),
                "{name:?}: a location two names share"
            );
        }
        // Put every probe on the store, then list the namespace's directory: exactly the probes,
        // each where its name put it.
        let storage = ctx.floe.storage().clone();
        futures::stream::iter(expected.keys().cloned())
            .map(|probe| {
                let storage = storage.clone();
                async move { storage.write(&probe, bytes::Bytes::from_static(b"x")).await }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<()>>()
            .await
            .unwrap();
        let prefix = format!("{warehouse}/{}/", namespace_dir.unwrap());
        let listed: BTreeSet<String> = storage.list(&prefix).await.unwrap().into_iter().collect();
        let wanted: BTreeSet<String> = expected.keys().cloned().collect();
        assert_eq!(listed.len(), wanted.len(), "objects under {prefix}");
        assert!(
            listed == wanted,
            "the store holds the probes where their names put them"
        );
        storage.delete_prefix(&prefix).await.unwrap();
        assert!(storage.list(&prefix).await.unwrap().is_empty());
    }
);
