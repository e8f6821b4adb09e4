//! What the engine's test files share.

/// Stamps each case once per backend: `sqlite::case` and `postgres::case`, each with a fresh
/// store (the PostgreSQL one skips, or fails under `PANDA_REQUIRE_ALL_BACKENDS=1`, without a
/// database).
macro_rules! backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let test = panda_store::testing::sqlite().await;
                    super::$case(&test).await;
                    test.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(test) = panda_store::testing::postgres().await else { return };
                    super::$case(&test).await;
                    test.close().await;
                }
            )*
        }
    };
}
