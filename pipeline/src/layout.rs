//! Where primary artifacts live in the lake. Snapshot, inference and Datanet manifests and
//! adapter folders are under `artifacts/` (`tributary_schemas::manifest::ARTIFACTS`), never
//! inside the folder of a Delta table: the `snapshots`, `adapters` and `datanets` tables are
//! derived (the indexer can always rebuild them) and may be dropped, rebuilt or vacuumed by any
//! engine, which must not take data nothing can recreate with them.
//!
//! Lakes written before kept them inside those folders; [`migrate`] moves them (idempotent:
//! a run stopped half-way finishes on the next).

use tributary_lake::Lake;
use tributary_schemas::manifest::ARTIFACTS;

use crate::Result;

/// The legacy folders artifacts were kept in, each the folder of a Delta table of the same
/// name; an artifact there is an object whose name starts with `0x` (snapshots, inferences,
/// adapters) or ends in `.json` right under the folder (Datanet manifests), never the table's
/// own `_delta_log/`, partition folders or data files.
const LEGACY: [&str; 4] = ["snapshots/", "inferences/", "adapters/", "datanets/"];

/// Moves artifacts from the legacy folders to `artifacts/`. Returns the objects moved.
pub async fn migrate(lake: &Lake) -> Result<usize> {
    let mut moved = 0;
    for folder in LEGACY {
        for key in lake.list_folder(folder).await? {
            let name = &key[folder.len()..];
            let artifact = if folder == "datanets/" {
                !name.ends_with('/') && name.ends_with(".json")
            } else {
                name.starts_with("0x")
            };
            if !artifact {
                continue;
            }
            let keys = if key.ends_with('/') {
                lake.list_all(&key).await?
            } else {
                vec![key.clone()]
            };
            for k in keys {
                let to = format!("{ARTIFACTS}{k}");
                lake.rename(&k, &to).await?;
                moved += 1;
            }
        }
    }
    if moved > 0 {
        tracing::info!(moved, "moved artifacts out of table folders to {ARTIFACTS}");
    }
    Ok(moved)
}
