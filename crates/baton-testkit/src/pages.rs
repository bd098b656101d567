//! Paged List calls followed to the end: the request's page token goes in,
//! the answer's `next_page_token` comes out, until it is empty.

use baton_proto::pubsub::{
    ListSchemaRevisionsResponse, ListSchemasResponse, ListSnapshotsResponse,
    ListSubscriptionsResponse, ListTopicSnapshotsResponse, ListTopicSubscriptionsResponse,
    ListTopicsResponse,
};

/// Most pages [`all_pages`] follows before it decides paging never ends.
pub const MAX_PAGES: usize = 10;

/// A page of a List answer.
pub trait Page {
    /// The token of the next page; empty on the last page.
    fn next_page_token(&self) -> &str;
}

macro_rules! page {
    ($($response:ty),* $(,)?) => {
        $(impl Page for $response {
            fn next_page_token(&self) -> &str {
                &self.next_page_token
            }
        })*
    };
}

page!(
    ListTopicsResponse,
    ListTopicSubscriptionsResponse,
    ListTopicSnapshotsResponse,
    ListSubscriptionsResponse,
    ListSnapshotsResponse,
    ListSchemasResponse,
    ListSchemaRevisionsResponse,
);

/// Every page of a List call, in order: `list` gets the page token to ask
/// with (empty for the first page) and answers that page. Panics when
/// paging goes on past [`MAX_PAGES`] (a token that never runs out).
///
/// ```text
/// let pages = all_pages(async |page_token| {
///     publisher
///         .list_topics(ListTopicsRequest { project: project(), page_size: 3, page_token })
///         .await
///         .unwrap()
///         .into_inner()
/// })
/// .await;
/// ```
pub async fn all_pages<P: Page>(mut list: impl AsyncFnMut(String) -> P) -> Vec<P> {
    let mut pages: Vec<P> = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(token).await;
        token = page.next_page_token().to_owned();
        pages.push(page);
        if token.is_empty() {
            return pages;
        }
        assert!(pages.len() < MAX_PAGES, "paging does not end");
    }
}

/// Every item of every page of a List call: [`all_pages`], then `items`
/// takes each page's items out.
pub async fn all_items<P: Page, T>(
    list: impl AsyncFnMut(String) -> P,
    items: impl FnMut(P) -> Vec<T>,
) -> Vec<T> {
    all_pages(list).await.into_iter().flat_map(items).collect()
}
