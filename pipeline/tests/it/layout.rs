//! A lake written before artifacts had their own prefix: snapshot, inference and Datanet
//! manifests and adapter folders inside the folders of the Delta tables named alike. `migrate`
//! moves exactly those to `artifacts/`, leaves the tables whole, and a second run moves
//! nothing.

use tributary_lake::Lake;
use tributary_pipeline::layout::migrate;
use tributary_schemas::tables::names;

#[tokio::test]
async fn legacy_artifacts_move_out_of_table_folders_and_the_tables_stay_whole() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().join("lake").to_str().unwrap()).unwrap();
    for t in [
        names::SNAPSHOTS,
        names::ADAPTERS,
        names::DATANETS,
        names::INFERENCES,
    ] {
        lake.table(t).await.unwrap();
    }
    let legacy = [
        ("snapshots/0xaa.json", "snapshot"),
        ("inferences/0xcc.json", "inference batch"),
        ("datanets/kitchen-conversions.json", "datanet manifest"),
        ("adapters/0xbb/manifest.json", "adapter manifest"),
        ("adapters/0xbb/adapter_model.safetensors", "weights"),
    ];
    for (key, body) in legacy {
        lake.put(key, body.as_bytes().to_vec()).await.unwrap();
    }
    let logs_before = lake.list_all("snapshots/_delta_log/").await.unwrap();

    assert_eq!(migrate(&lake).await.unwrap(), legacy.len());
    for (key, body) in legacy {
        let moved = lake.root().join(&format!("artifacts/{key}")).unwrap();
        assert_eq!(lake.get(moved.as_str()).await.unwrap(), body.as_bytes());
        let old = lake.root().join(key).unwrap();
        assert!(
            lake.get(old.as_str()).await.unwrap_err().is_not_found(),
            "{key} is still there"
        );
    }
    // The tables are untouched and still open.
    assert_eq!(
        lake.list_all("snapshots/_delta_log/").await.unwrap(),
        logs_before
    );
    for t in [
        names::SNAPSHOTS,
        names::ADAPTERS,
        names::DATANETS,
        names::INFERENCES,
    ] {
        lake.read(t, None).await.unwrap();
    }
    assert_eq!(migrate(&lake).await.unwrap(), 0, "nothing left to move");
}
