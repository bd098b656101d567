//! Pages of list calls, the way the service pages: a page token is the name
//! of the first item of the next page, and an unknown token starts over.

use std::collections::BTreeMap;

/// One page of a list call.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Token of the next page; empty on the last page.
    pub next_page_token: String,
}

/// Pages over the names in a sorted map that start with `prefix`, keeping
/// the values `filter` accepts and turning each into an item with `project`.
/// A `page_size` of 0 or less means no limit.
pub(crate) fn page<'a, V, T>(
    map: &'a BTreeMap<String, V>,
    prefix: &str,
    page_size: i32,
    page_token: &str,
    filter: impl Fn(&'a V) -> bool,
    project: impl Fn(&'a String, &'a V) -> T,
) -> ListPage<T> {
    let start = if page_token.starts_with(prefix) {
        page_token.to_string()
    } else {
        prefix.to_string()
    };
    let limit = usize::try_from(page_size).ok().filter(|n| *n > 0);
    let mut items = Vec::new();
    let mut next_page_token = String::new();
    for (name, value) in map.range(start..) {
        if !name.starts_with(prefix) {
            break;
        }
        if !filter(value) {
            continue;
        }
        if limit.is_some_and(|n| items.len() >= n) {
            next_page_token = name.clone();
            break;
        }
        items.push(project(name, value));
    }
    ListPage {
        items,
        next_page_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> BTreeMap<String, usize> {
        (0..n)
            .map(|i| (format!("projects/p/topics/t{i:02}"), i))
            .collect()
    }

    #[test]
    fn pages_follow_the_token_to_the_end() {
        let map = names(5);
        let first = page(&map, "projects/p/topics/", 2, "", |_| true, |_, v| *v);
        assert_eq!(first.items, vec![0, 1]);
        assert_eq!(first.next_page_token, "projects/p/topics/t02");
        let second = page(
            &map,
            "projects/p/topics/",
            2,
            &first.next_page_token,
            |_| true,
            |_, v| *v,
        );
        assert_eq!(second.items, vec![2, 3]);
        let last = page(
            &map,
            "projects/p/topics/",
            2,
            &second.next_page_token,
            |_| true,
            |_, v| *v,
        );
        assert_eq!(last.items, vec![4]);
        assert!(last.next_page_token.is_empty());
    }

    #[test]
    fn a_foreign_token_starts_over_and_no_size_means_everything() {
        let map = names(3);
        let all = page(
            &map,
            "projects/p/topics/",
            0,
            "projects/q/x",
            |_| true,
            |_, v| *v,
        );
        assert_eq!(all.items, vec![0, 1, 2]);
        assert!(all.next_page_token.is_empty());
    }
}
