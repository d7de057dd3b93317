use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use tributary_lake::{Error, Lake};
use tributary_schemas::tables::{self, names};

fn rows(datanet: i64, ids: &[&str]) -> RecordBatch {
    let n = ids.len();
    let s = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
    let i = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v; n])) };
    RecordBatch::try_new(
        tables::contributions(),
        vec![
            i(datanet),
            Arc::new(StringArray::from(ids.to_vec())),
            s("0xaa"),
            s("0xcc"),
            s("MIT"),
            i(1),
            i(0),
            i(2),
            s("0xsig"),
            s("{}"),
            s("0xba"),
            Arc::new(TimestampMicrosecondArray::from(vec![0; n]).with_timezone("UTC")),
        ],
    )
    .unwrap()
}

fn count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// Writers racing on one table: each distinct append lands once, and writers racing to commit
/// the same application transaction (a batch finished by two processes) add it exactly once,
/// none of them failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_retry_conflicts_and_add_each_transaction_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let root = root.to_str().unwrap();
    Lake::open(root)
        .unwrap()
        .table(names::CONTRIBUTIONS)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for k in 0..12 {
        // Separate handles, as separate processes would have.
        let lake = Lake::open(root).unwrap();
        tasks.push(tokio::spawn(async move {
            let (app, id) = if k % 2 == 0 {
                ("shared".to_string(), "same".to_string())
            } else {
                (format!("own-{k}"), format!("r{k}"))
            };
            lake.append(names::CONTRIBUTIONS)
                .batches(vec![rows(1, &[id.as_str()])])
                .idempotent(app, 0)
                .commit()
                .await
        }));
    }
    let mut newly_shared = 0;
    for (k, t) in tasks.into_iter().enumerate() {
        let appended = t.await.unwrap().expect("no writer fails on a conflict");
        if k % 2 == 0 && appended.newly_committed {
            newly_shared += 1;
        }
    }
    assert_eq!(newly_shared, 1, "the shared transaction is committed once");
    let lake = Lake::open(root).unwrap();
    assert_eq!(
        count(&lake.read(names::CONTRIBUTIONS, None).await.unwrap()),
        7
    );
}

#[tokio::test]
async fn appends_are_idempotent_and_versions_can_be_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();

    let t = lake.table(names::CONTRIBUTIONS).await.unwrap();
    assert_eq!(t.version(), Some(0), "created empty at version 0");
    assert_eq!(
        count(&lake.read(names::CONTRIBUTIONS, None).await.unwrap()),
        0
    );

    let a = lake
        .append(names::CONTRIBUTIONS)
        .batches(vec![rows(1, &["a", "b"])])
        .idempotent("batch-a", 0)
        .commit()
        .await
        .unwrap();
    assert_eq!((a.version, a.newly_committed), (1, true));
    let b = lake
        .append(names::CONTRIBUTIONS)
        .batches(vec![rows(2, &["c"])])
        .idempotent("batch-b", 0)
        .commit()
        .await
        .unwrap();
    assert_eq!(b.version, 2);

    // The same batch again (a retry after a crash): nothing added, the original version named.
    let again = lake
        .append(names::CONTRIBUTIONS)
        .batches(vec![rows(1, &["a", "b"])])
        .idempotent("batch-a", 0)
        .commit()
        .await
        .unwrap();
    assert_eq!((again.version, again.newly_committed), (1, false));

    assert_eq!(
        count(&lake.read(names::CONTRIBUTIONS, None).await.unwrap()),
        3
    );
    assert_eq!(
        count(&lake.read(names::CONTRIBUTIONS, Some(1)).await.unwrap()),
        2,
        "time travel"
    );
    assert_eq!(
        count(&lake.read(names::CONTRIBUTIONS, Some(0)).await.unwrap()),
        0
    );

    // Partitioned by Datanet on disk.
    assert!(dir.path().join("lake/contributions/datanet_id=1").is_dir());
    assert!(dir.path().join("lake/contributions/datanet_id=2").is_dir());

    // A second handle on the same root sees the same table.
    let other = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    assert_eq!(
        count(&other.read(names::CONTRIBUTIONS, None).await.unwrap()),
        3
    );
}

#[tokio::test]
async fn objects_round_trip_and_foreign_uris_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    let uri = lake
        .put("manifests/batches/x.json", b"{\"a\":1}".to_vec())
        .await
        .unwrap();
    assert!(uri.as_str().starts_with(lake.root().as_str()));
    assert_eq!(lake.get(uri.as_str()).await.unwrap(), b"{\"a\":1}");

    // By key, relative to the root: what the lake and the chain record.
    assert_eq!(
        lake.get("manifests/batches/x.json").await.unwrap(),
        b"{\"a\":1}"
    );
    for escape in ["/etc/passwd", "../x.json", "manifests/../../x.json"] {
        let err = lake.get(escape).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{escape}: {err}");
    }
    let err = lake.get("file:///etc/passwd").await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    // A URI recorded where the lake was before it moved resolves to the canonical key.
    assert_eq!(
        lake.locate(
            "file:///old/place/manifests/batches/x.json",
            "manifests/batches/x.json"
        ),
        "manifests/batches/x.json"
    );
    assert_eq!(
        lake.locate(uri.as_str(), "other"),
        "manifests/batches/x.json"
    );
    assert!(
        lake.get(&format!("{}missing.json", lake.root()))
            .await
            .is_err()
    );
    // A key with a space (a Datanet's name): its URI is percent-encoded, its key is not.
    let key = "artifacts/datanets/Medical QA 100%.json";
    let uri = lake.put(key, b"{}".to_vec()).await.unwrap();
    assert!(
        uri.as_str().ends_with("Medical%20QA%20100%25.json"),
        "{uri}"
    );
    assert_eq!(lake.get(uri.as_str()).await.unwrap(), b"{}");
    assert_eq!(lake.get(key).await.unwrap(), b"{}");
    assert_eq!(lake.locate(uri.as_str(), "other"), key);
}

#[tokio::test]
async fn unknown_tables_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
    let err = lake.table("nope").await.unwrap_err();
    assert!(
        matches!(&err, Error::UnknownTable(t) if t == "nope"),
        "{err}"
    );
}

/// A column another engine added to a table (Spark's `ALTER TABLE ... ADD COLUMNS`) does not
/// stop Tributary's appends (before, every append failed casting its rows to the table's
/// schema): the rows land with it null, and reads keep Tributary's columns.
#[tokio::test]
async fn a_column_another_engine_added_does_not_stop_appends() {
    use deltalake::kernel::{DataType, StructField};

    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    lake.append(names::CONTRIBUTIONS)
        .batches(vec![rows(1, &["a"])])
        .commit()
        .await
        .unwrap();
    lake.table(names::CONTRIBUTIONS)
        .await
        .unwrap()
        .add_columns()
        .with_fields([StructField::new("note", DataType::STRING, true)])
        .await
        .unwrap();
    lake.append(names::CONTRIBUTIONS)
        .batches(vec![rows(1, &["b"])])
        .commit()
        .await
        .unwrap();
    let read = lake.read(names::CONTRIBUTIONS, None).await.unwrap();
    assert_eq!(count(&read), 2);
    assert!(read.iter().all(|b| b.column_by_name("note").is_none()));
}

/// An idempotent append retried after another engine's log cleanup (a checkpoint, then the
/// commit files before it removed, as Spark does after 30 days) reports a version that holds
/// its rows: the current one, since its own commit file is gone. Before, version 0, which
/// holds none of them (and whose log is gone too).
#[tokio::test]
async fn a_retried_append_after_log_cleanup_names_a_version_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    let append = |ids: &'static [&'static str], app: &'static str| {
        let lake = lake.clone();
        async move {
            lake.append(names::CONTRIBUTIONS)
                .batches(vec![rows(1, ids)])
                .idempotent(app, 0)
                .commit()
                .await
                .unwrap()
        }
    };
    let first = append(&["a"], "batch-a").await;
    assert!(first.newly_committed);
    append(&["b"], "batch-b").await;
    let last = append(&["c"], "batch-c").await;
    let table = lake.table(names::CONTRIBUTIONS).await.unwrap();
    deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .unwrap();
    let far_future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 3_600_000;
    let removed = deltalake::checkpoints::cleanup_expired_logs_for(
        last.version,
        &*table.log_store(),
        far_future,
        None,
    )
    .await
    .unwrap();
    assert!(removed > 0, "the log before the checkpoint is gone");

    let again = append(&["a"], "batch-a").await;
    assert!(!again.newly_committed);
    let at = lake
        .read(names::CONTRIBUTIONS, Some(again.version))
        .await
        .unwrap();
    assert_eq!(count(&at), 3, "read at version {}", again.version);
}
