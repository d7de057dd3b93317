//! Parsed queries kept by their text, so a client that sends the same query with new variables
//! (as GraphiQL, Apollo and urql do) is not parsed again: parsing a page query cost about a
//! tenth of a request's CPU. The document is handed to the request before it runs
//! (`Request::set_parsed_query`), not through a schema extension: with any extension the
//! schema wraps every field's resolution, which cost more than the parse. The parse-time
//! checks (nesting, directives) and validation still run on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;

/// Queries longer than this are parsed every time (and never held).
const MAX_QUERY: usize = 16 * 1024;

/// The documents of at most `2 * half` recent query texts: a newer and an older generation;
/// when the newer fills it becomes the older one (the older one is dropped), and a hit in the
/// older one moves to the newer. Bounded, O(1), and the queries in use stay.
pub(crate) struct Documents {
    half: usize,
    gens: Mutex<[HashMap<Arc<str>, Arc<ExecutableDocument>>; 2]>,
}

impl Documents {
    pub(crate) fn new(entries: usize) -> Self {
        Self {
            half: (entries / 2).max(1),
            gens: Mutex::new([HashMap::new(), HashMap::new()]),
        }
    }

    /// Gives `request` its parsed query: the kept one, or one parsed now (and kept). A query
    /// that does not parse is left for the schema, which reports the error.
    pub(crate) fn prepare(&self, request: &mut async_graphql::Request) {
        if request.query.len() > MAX_QUERY {
            return;
        }
        if let Some(doc) = self.get(&request.query) {
            request.set_parsed_query((*doc).clone());
        } else if let Ok(doc) = request.parsed_query() {
            let doc = Arc::new(doc.clone());
            self.put(&request.query, doc);
        }
    }

    fn get(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        let mut g = self.gens.lock().expect("lock");
        if let Some(d) = g[0].get(query) {
            return Some(d.clone());
        }
        let (key, d) = g[1].remove_entry(query)?;
        self.put_locked(&mut g, key, d.clone());
        Some(d)
    }

    fn put(&self, query: &str, doc: Arc<ExecutableDocument>) {
        let mut g = self.gens.lock().expect("lock");
        self.put_locked(&mut g, Arc::from(query), doc);
    }

    fn put_locked(
        &self,
        g: &mut [HashMap<Arc<str>, Arc<ExecutableDocument>>; 2],
        key: Arc<str>,
        doc: Arc<ExecutableDocument>,
    ) {
        if g[0].len() >= self.half {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(key, doc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(q: &str) -> Arc<ExecutableDocument> {
        Arc::new(async_graphql::parser::parse_query(q).unwrap())
    }

    #[test]
    fn keeps_recent_queries_within_its_bound() {
        let d = Documents::new(4);
        for i in 0..10 {
            d.put(&format!("{{ a{i} }}"), doc(&format!("{{ a{i} }}")));
        }
        let held = |d: &Documents| {
            let g = d.gens.lock().unwrap();
            g[0].len() + g[1].len()
        };
        assert!(held(&d) <= 4, "{} held", held(&d));
        assert!(d.get("{ a9 }").is_some() && d.get("{ a8 }").is_some());
        assert!(d.get("{ a0 }").is_none());
        // A query in use survives a turnover of others.
        for i in 10..13 {
            assert!(d.get("{ a8 }").is_some());
            d.put(&format!("{{ a{i} }}"), doc(&format!("{{ a{i} }}")));
        }
        assert!(d.get("{ a8 }").is_some());
        assert!(held(&d) <= 4);
    }

    #[test]
    fn hands_requests_their_document_and_keeps_only_good_ones() {
        let d = Documents::new(8);
        let mut r = async_graphql::Request::new("{ chainId }");
        d.prepare(&mut r);
        let first = r.parsed_query().unwrap().clone();
        let mut again = async_graphql::Request::new("{ chainId }");
        d.prepare(&mut again);
        assert_eq!(
            format!("{:?}", again.parsed_query().unwrap()),
            format!("{first:?}")
        );
        d.prepare(&mut async_graphql::Request::new("{ chainId"));
        let g = d.gens.lock().unwrap();
        assert_eq!(
            g[0].len() + g[1].len(),
            1,
            "a query that does not parse is not kept"
        );
    }
}
