//! The suite every [`MetaStore`] adapter must pass. Each check panics with a message naming the
//! broken rule, so adapters' tests are one line: `conformance::run(&store).await`.

use crate::{Batch, MetaStore, StoreError, Table};

const T: Table = Table("conformance");
const OTHER: Table = Table("conformance_other");

/// Runs every check against `store`, which must start empty.
pub async fn run(store: &dyn MetaStore) {
    missing_tables_read_as_empty(store).await;
    put_get_delete(store).await;
    scan_is_prefix_bounded_and_ordered(store).await;
    failed_guard_writes_nothing(store).await;
    unchanged_guards(store).await;
    concurrent_commits_each_hold(store).await;
    reports_what_a_commit_replaced(store).await;
    consistent_scans_see_a_move_once(store).await;
}

/// A record moved from one table to another by one commit is, in every consistent view, in
/// exactly one of them, however the scans and the moves interleave.
async fn consistent_scans_see_a_move_once(store: &dyn MetaStore) {
    const FROM: Table = Table("conformance_from");
    const TO: Table = Table("conformance_to");
    commit(store, Batch::new().put(FROM, "moving", b"0".to_vec())).await;
    let moves = async {
        for i in 0..40u8 {
            let (from, to) = if i % 2 == 0 { (FROM, TO) } else { (TO, FROM) };
            commit(store, Batch::new().delete(from, "moving").put(to, "moving", vec![i + 1])).await;
            yield_once().await;
        }
    };
    let views = async {
        let mut seen = Vec::new();
        for _ in 0..40 {
            match store.scan_consistent(&[(FROM, ""), (TO, "")]).await {
                Ok(tables) => seen.push(tables.iter().map(Vec::len).sum::<usize>()),
                Err(e) => panic!("scan_consistent failed: {e}"),
            }
            yield_once().await;
        }
        seen
    };
    let ((), seen) = futures_util::future::join(moves, views).await;
    assert!(seen.iter().all(|n| *n == 1), "every consistent view holds the moved record exactly once: {seen:?}");
    let tables = match store.scan_consistent(&[(T, "p/"), (Table("never_written"), "")]).await {
        Ok(tables) => tables,
        Err(e) => panic!("scan_consistent failed: {e}"),
    };
    let keys: Vec<Vec<&str>> = tables.iter().map(|t| t.iter().map(|(k, _)| k.as_str()).collect()).collect();
    assert_eq!(keys, [vec!["p/a", "p/b"], vec![]], "each scan is prefix-bounded, a missing table is empty");
}

/// Lets the other future of a `join` run (the suite depends on no particular runtime).
async fn yield_once() {
    let mut yielded = false;
    futures_util::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

async fn reports_what_a_commit_replaced(store: &dyn MetaStore) {
    let report = |value: &'static [u8]| async move {
        match store.commit_reporting(Batch::new().put(T, "reported", value.to_vec()), Some((T, "reported"))).await {
            Ok(previous) => previous,
            Err(e) => panic!("commit_reporting failed: {e}"),
        }
    };
    assert_eq!(report(b"1").await, None, "nothing was replaced by the first put");
    assert_eq!(report(b"2").await.as_deref(), Some(&b"1"[..]), "the previous value is reported");
    // Racing puts: each reports a distinct predecessor, so together they name every value once.
    let racers = (0..8u8).map(|i| async move {
        store.commit_reporting(Batch::new().put(T, "raced", vec![i]), Some((T, "raced"))).await
    });
    let mut replaced: Vec<Option<Vec<u8>>> =
        futures_util::future::join_all(racers).await.into_iter().map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect();
    replaced.sort();
    let last = get(store, T, "raced").await.unwrap_or_else(|| panic!("raced key missing"));
    let mut expected: Vec<Option<Vec<u8>>> =
        (0..8u8).filter(|i| vec![*i] != last).map(|i| Some(vec![i])).chain([None]).collect();
    expected.sort();
    assert_eq!(replaced, expected, "racing commits each replaced a different value");
    let failed = store
        .commit_reporting(
            Batch::new().expect_absent(T, "reported").put(T, "reported", b"3".to_vec()),
            Some((T, "reported")),
        )
        .await;
    assert!(matches!(failed, Err(StoreError::Conflict { .. })), "a failed guard still fails");
}

async fn missing_tables_read_as_empty(store: &dyn MetaStore) {
    assert!(matches!(store.get(Table("never_written"), "k").await, Ok(None)), "missing table must read as empty");
    assert!(matches!(store.scan(Table("never_written"), "").await, Ok(v) if v.is_empty()));
}

async fn put_get_delete(store: &dyn MetaStore) {
    commit(store, Batch::new().put(T, "a", b"1".to_vec())).await;
    assert_eq!(get(store, T, "a").await.as_deref(), Some(&b"1"[..]), "put then get");
    assert_eq!(get(store, OTHER, "a").await, None, "tables are separate");
    commit(store, Batch::new().put(T, "a", b"2".to_vec())).await;
    assert_eq!(get(store, T, "a").await.as_deref(), Some(&b"2"[..]), "put overwrites");
    commit(store, Batch::new().delete(T, "a")).await;
    assert_eq!(get(store, T, "a").await, None, "delete removes");
}

async fn scan_is_prefix_bounded_and_ordered(store: &dyn MetaStore) {
    let batch = ["p/b", "p/a", "q/a", "p", "o/z"].iter().fold(Batch::new(), |b, k| b.put(T, *k, k.as_bytes().to_vec()));
    commit(store, batch).await;
    let keys: Vec<String> = match store.scan(T, "p/").await {
        Ok(rows) => rows.into_iter().map(|(k, _)| k).collect(),
        Err(e) => panic!("scan failed: {e}"),
    };
    assert_eq!(keys, ["p/a", "p/b"], "scan returns exactly the prefix, in key order");
    let page = |after, limit| async move {
        match store.scan_page(T, "p/", after, limit).await {
            Ok(rows) => rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
            Err(e) => panic!("scan_page failed: {e}"),
        }
    };
    assert_eq!(page(None, 1).await, ["p/a"], "a page is limited");
    assert_eq!(page(Some("p/a"), 10).await, ["p/b"], "a page starts after the marker");
    assert_eq!(page(Some("a"), 10).await, ["p/a", "p/b"], "a marker before the prefix starts at the prefix");
}

async fn failed_guard_writes_nothing(store: &dyn MetaStore) {
    commit(store, Batch::new().put(T, "guarded", b"x".to_vec())).await;
    let batch = Batch::new().put(T, "side-effect", b"y".to_vec()).expect_absent(T, "guarded");
    assert!(matches!(store.commit(batch).await, Err(StoreError::Conflict { .. })), "guard must fail");
    assert_eq!(get(store, T, "side-effect").await, None, "a failed batch must write nothing");
    commit(store, Batch::new().expect_absent(T, "fresh").put(T, "fresh", b"z".to_vec())).await;
    assert!(get(store, T, "fresh").await.is_some(), "a passing guard lets the batch apply");
}

async fn unchanged_guards(store: &dyn MetaStore) {
    commit(store, Batch::new().put(T, "cas", b"v1".to_vec())).await;
    let stale = Batch::new().expect_unchanged(T, "cas", Some(b"v0".to_vec())).put(T, "cas", b"x".to_vec());
    assert!(matches!(store.commit(stale).await, Err(StoreError::Conflict { .. })), "a stale read must not win");
    commit(store, Batch::new().expect_unchanged(T, "cas", Some(b"v1".to_vec())).put(T, "cas", b"v2".to_vec())).await;
    assert_eq!(get(store, T, "cas").await.as_deref(), Some(&b"v2"[..]));
    commit(store, Batch::new().expect_unchanged(T, "cas-new", None).put(T, "cas-new", b"n".to_vec())).await;
    assert!(get(store, T, "cas-new").await.is_some(), "None means absent");
}

/// Many commits at once (as concurrent requests make them): each applies or conflicts on its own.
async fn concurrent_commits_each_hold(store: &dyn MetaStore) {
    let commits = (0..32).map(|i| {
        let key = format!("race-{}", i % 16);
        store.commit(Batch::new().expect_absent(T, key.clone()).put(T, key, vec![i as u8]))
    });
    let results = futures_util::future::join_all(commits).await;
    let applied = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results.iter().filter(|r| matches!(r, Err(StoreError::Conflict { .. }))).count();
    assert_eq!((applied, conflicts), (16, 16), "exactly one commit per key wins");
}

async fn commit(store: &dyn MetaStore, batch: Batch) {
    if let Err(e) = store.commit(batch).await {
        panic!("commit failed: {e}");
    }
}

async fn get(store: &dyn MetaStore, table: Table, key: &str) -> Option<Vec<u8>> {
    match store.get(table, key).await {
        Ok(v) => v,
        Err(e) => panic!("get failed: {e}"),
    }
}
