//! Test databases for both backends: a SQLite file in a unique temp dir, or a fresh PostgreSQL database
//! (`tg_test_<uuid>`) on the local server, dropped again when the test ends — also when it panics.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};
use tollgate_store::{PoolOptions, Store};

/// The maintenance database of the local PostgreSQL server (trust auth).
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PG_ADDR: &str = "127.0.0.1:5432";

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One test database. Dropping it removes the database (SQLite: the temp dir; PostgreSQL: `DROP DATABASE
/// ... WITH (FORCE)` on a fresh runtime in its own thread).
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// A pool to the database (migrated unless created with `migrate = false`).
    pub store: Store,
    /// A private temp dir for the test (journals, other files).
    pub dir: PathBuf,
    _guard: Guard,
}

struct Guard {
    dir: PathBuf,
    pg_name: Option<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let handle = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime for the database drop");
                rt.block_on(async move {
                    match PgConnection::connect(PG_ADMIN_URL).await {
                        Ok(mut c) => {
                            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                            if let Err(e) = c.execute(sql.as_str()).await {
                                eprintln!("cannot drop test database {name}: {e}");
                            }
                            let _ = c.close().await;
                        }
                        Err(e) => eprintln!("cannot drop test database {name}: {e}"),
                    }
                });
            });
            let _ = handle.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-test-{}", unique()));
    std::fs::create_dir_all(&dir).expect("create the test temp dir");
    dir
}

pub fn pool_options(max_connections: u32) -> PoolOptions {
    PoolOptions {
        max_connections,
        connect_timeout: Duration::from_secs(10),
    }
}

fn services_required() -> bool {
    std::env::var("TOLLGATE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Whether the local PostgreSQL server accepts TCP connections; with `TOLLGATE_REQUIRE_SERVICES=1` an
/// unreachable server is a failure instead of a skip.
pub fn postgres_available(test: &str) -> bool {
    let addr = PG_ADDR.parse().expect("address");
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => true,
        Err(e) => {
            if services_required() {
                panic!("PostgreSQL unavailable at {PG_ADDR} ({e}) and TOLLGATE_REQUIRE_SERVICES=1");
            }
            println!("SKIPPED: PostgreSQL unavailable at {PG_ADDR} ({e}): {test}");
            false
        }
    }
}

impl TestDb {
    /// A new database on `backend`, migrated when `migrate` is set. `None` when PostgreSQL is not running
    /// (the test is skipped).
    pub async fn new(backend: Backend, migrate: bool, test: &str) -> Option<TestDb> {
        Self::with_pool_size(backend, migrate, test, 8).await
    }

    pub async fn with_pool_size(
        backend: Backend,
        migrate: bool,
        test: &str,
        max_connections: u32,
    ) -> Option<TestDb> {
        let dir = temp_dir();
        let (url, guard) = match backend {
            Backend::Sqlite => {
                let path = dir.join("test.db");
                (
                    format!("sqlite://{}", path.display()),
                    Guard {
                        dir: dir.clone(),
                        pg_name: None,
                    },
                )
            }
            Backend::Postgres => {
                if !postgres_available(test) {
                    let _ = std::fs::remove_dir_all(&dir);
                    return None;
                }
                let name = format!("tg_test_{}", unique());
                let mut admin = PgConnection::connect(PG_ADMIN_URL)
                    .await
                    .expect("connect to the PostgreSQL maintenance database");
                admin
                    .execute(format!("CREATE DATABASE \"{name}\"").as_str())
                    .await
                    .expect("create the test database");
                let _ = admin.close().await;
                (
                    format!("postgres://postgres@{PG_ADDR}/{name}"),
                    Guard {
                        dir: dir.clone(),
                        pg_name: Some(name),
                    },
                )
            }
        };
        let store = Store::connect(&url, pool_options(max_connections))
            .await
            .expect("connect to the test database");
        if migrate {
            store.migrate().await.expect("migrate the test database");
        }
        Some(TestDb {
            backend,
            url,
            store,
            dir,
            _guard: guard,
        })
    }

    /// Another pool to the same database.
    pub async fn connect_again(&self) -> Store {
        Store::connect(&self.url, pool_options(8))
            .await
            .expect("second connection to the test database")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Lines of a file (0 when it does not exist).
pub fn line_count(path: &Path) -> usize {
    match std::fs::read_to_string(path) {
        Ok(s) => s.lines().filter(|l| !l.trim().is_empty()).count(),
        Err(_) => 0,
    }
}

/// Generate a `sqlite` and a `postgres` `#[tokio::test]` for `async fn $name(db: &TestDb)`, in a module of
/// the same name (`cargo test entity_crud::postgres`). Attributes before a name (`#[ignore = "..."]`) go on
/// both tests.
macro_rules! both_backends {
    ($($(#[$m:meta])* $name:ident),+ $(,)?) => {
        $(
            mod $name {
                $(#[$m])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    let db = crate::common::TestDb::new(
                        crate::common::Backend::Sqlite,
                        true,
                        concat!(stringify!($name), "::sqlite"),
                    )
                    .await
                    .expect("sqlite is always available");
                    super::$name(&db).await;
                }

                $(#[$m])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    let Some(db) = crate::common::TestDb::new(
                        crate::common::Backend::Postgres,
                        true,
                        concat!(stringify!($name), "::postgres"),
                    )
                    .await
                    else {
                        return;
                    };
                    super::$name(&db).await;
                }
            }
        )+
    };
}
