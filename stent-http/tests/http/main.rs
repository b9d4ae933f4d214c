//! The layer behind a real axum server on 127.0.0.1, driven by a real HTTP client: the
//! store-dependent rules on every backend (`cases`), the others on memory (`rules`), the
//! store's failures (`failures`) and the example program (`example`).

mod cases;
mod example;
mod failures;
mod rules;
mod support;

mod memory {
    crate::http_cases!(crate::support::backends::memory);
}

mod sqlite {
    crate::http_cases!(crate::support::backends::sqlite);
}

mod postgres {
    crate::http_cases!(crate::support::backends::postgres);
}

mod redis {
    crate::http_cases!(crate::support::backends::redis);
}

mod redis_cluster {
    crate::http_cases!(crate::support::backends::redis_cluster);
}

mod dynamodb {
    crate::http_cases!(crate::support::backends::dynamodb);
}
