//! The sqllogictest files in `sql/tests/*.slt`, run against an analyst session over the
//! fixture lake of the SQL tests. `TRIBUTARY_BLESS=1` rewrites their expected results from
//! what the session answers (review the diff before committing it).

use std::path::PathBuf;

use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType};
use tributary_api::analyst::{Analyst, SqlError, SqlLimits};

use crate::sql::{analyst, fixture};

/// An analyst session as sqllogictest's database.
struct Db(Analyst);

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let answer = self.0.query(sql).await?;
        let types = answer
            .schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &answer.batches {
            let columns = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SqlError::Query(e.to_string()))?;
            for row in 0..batch.num_rows() {
                rows.push(columns.iter().map(|c| c.value(row).to_string()).collect());
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tributary"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sql/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_pass_on_the_fixture_lake() {
    let f = fixture().await;
    let session = analyst(&f, SqlLimits::default()).await;
    let files = slt_files();
    assert!(!files.is_empty(), "no sql/tests/*.slt files");
    // Every view is covered by some file.
    let all: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for view in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../sql/views")).unwrap() {
        let name = view.unwrap().path();
        let name = name.file_stem().unwrap().to_str().unwrap().to_string();
        assert!(all.contains(&name), "no .slt file queries the view {name}");
    }
    let bless = std::env::var_os("TRIBUTARY_BLESS").is_some();
    for file in files {
        let s = session.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let s = s.clone();
            async move { Ok::<_, SqlError>(Db(s)) }
        });
        if bless {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        } else if let Err(e) = runner.run_file_async(&file).await {
            panic!("{}:\n{}", file.display(), e.display(true));
        }
    }
}
