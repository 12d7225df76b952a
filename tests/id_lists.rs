//! `Backend::id_in`: a list of ids as one bound value (short lists) or written into the SQL
//! (long ones) selects exactly the listed rows of the tenant, on both engines, on both sides of
//! the boundary, with ids of another tenant and ids that exist nowhere mixed in.

use crate::common;

use common::{TestDb, CONTOSO, FABRIKAM};
use tenantatlas::server::seed;

both_backends!(TestDb: an_id_list_selects_the_listed_rows_however_it_is_sent);

async fn an_id_list_selects_the_listed_rows_however_it_is_sent(t: TestDb) {
    seed::seed_demo(&t.db).await.unwrap();
    let ours = common::insert_policies(&t.db, CONTOSO, 260).await;
    let theirs = common::insert_policies(&t.db, FABRIKAM, 20).await;
    let tenant = common::tenant_id(&t.db, CONTOSO).await;
    let nowhere = ours.iter().chain(&theirs).max().unwrap() + 1_000;
    for len in [0, 1, 2, 50, 99, 100, 101, 102, 250] {
        // `len` ids of this tenant, and as many of another and of none (which never count).
        let mut ids: Vec<i64> = ours[..len].to_vec();
        ids.extend(theirs.iter().take(len.min(theirs.len())));
        ids.extend((0..len as i64).map(|i| nowhere + i));
        let list = t.db.backend().id_in("id", "$2", &ids);
        let sql = format!(
            "SELECT COUNT(*) FROM policies WHERE tenant_id = $1 AND {}",
            list.sql
        );
        // Twice: the second run of a kept statement is its prepared one.
        for _ in 0..2 {
            let found: i64 = list
                .bind(sqlx::query_scalar(&sql).bind(tenant))
                .fetch_one(t.db.pool())
                .await
                .unwrap_or_else(|error| panic!("{len} ids: {error}"));
            assert_eq!(
                found,
                len as i64,
                "{len} ids of the tenant among {}",
                ids.len()
            );
        }
    }
}
