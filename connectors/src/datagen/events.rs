//! The three event generators: orders, IoT telemetry and clickstream.

use rand::Rng;
use rand::rngs::StdRng;
use sluice_connector_api::{Field, Schema, SchemaType, Struct, Value};

/// Which events datagen produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quickstart {
    /// E-commerce orders keyed by customer.
    Orders,
    /// Sensor telemetry keyed by device.
    Iot,
    /// Page views keyed by user.
    Clickstream,
}

const PRODUCTS: &[(&str, f64)] = &[
    ("keyboard", 49.99),
    ("monitor", 229.0),
    ("mouse", 19.5),
    ("laptop stand", 39.0),
    ("usb-c hub", 59.9),
    ("headset", 89.0),
    ("webcam", 74.25),
];
const STATUSES: &[&str] = &["created", "paid", "shipped", "delivered", "cancelled"];
const SENSORS: &[&str] = &["thermostat", "air-quality", "cold-chain", "greenhouse"];
const PAGES: &[&str] = &[
    "/",
    "/search",
    "/product/123",
    "/product/987",
    "/cart",
    "/checkout",
    "/account",
    "/help",
];
const REFERRERS: &[&str] = &["direct", "google", "newsletter", "partner", "social"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5)",
];

fn field(name: &str, schema: Schema) -> Field {
    Field {
        name: name.to_owned(),
        schema,
    }
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

impl Quickstart {
    /// Parses `orders`, `iot` or `clickstream`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "orders" => Some(Quickstart::Orders),
            "iot" => Some(Quickstart::Iot),
            "clickstream" => Some(Quickstart::Clickstream),
            _ => None,
        }
    }

    /// The value schema.
    pub fn schema(self) -> Schema {
        let common = || {
            vec![
                field("task", Schema::new(SchemaType::Int32)),
                field("seq", Schema::new(SchemaType::Int64)),
                field("ts", Schema::timestamp()),
            ]
        };
        let mut fields = common();
        let name = match self {
            Quickstart::Orders => {
                fields.extend([
                    field("order_id", Schema::new(SchemaType::String)),
                    field("customer_id", Schema::new(SchemaType::String)),
                    field("product", Schema::new(SchemaType::String)),
                    field("quantity", Schema::new(SchemaType::Int32)),
                    field("unit_price", Schema::new(SchemaType::Float64)),
                    field("status", Schema::new(SchemaType::String)),
                ]);
                "io.sluice.datagen.Order"
            }
            Quickstart::Iot => {
                fields.extend([
                    field("device_id", Schema::new(SchemaType::String)),
                    field("sensor", Schema::new(SchemaType::String)),
                    field("temperature_c", Schema::new(SchemaType::Float64)),
                    field("humidity_pct", Schema::new(SchemaType::Float64)),
                    field("battery_pct", Schema::new(SchemaType::Int32)),
                ]);
                "io.sluice.datagen.Telemetry"
            }
            Quickstart::Clickstream => {
                fields.extend([
                    field("session_id", Schema::new(SchemaType::String)),
                    field("user_id", Schema::new(SchemaType::String)),
                    field("page", Schema::new(SchemaType::String)),
                    field("referrer", Schema::new(SchemaType::String)),
                    field("user_agent", Schema::new(SchemaType::String)),
                ]);
                "io.sluice.datagen.PageView"
            }
        };
        Schema::structure(fields).named(name)
    }

    /// One event: its key and value.
    pub fn generate(
        self,
        rng: &mut StdRng,
        task: u32,
        seq: i64,
        cardinality: u64,
        now_ms: i64,
    ) -> (String, Value) {
        let entity = rng.random_range(0..cardinality);
        let base = Struct::new()
            .with("task", Value::Int32(task as i32))
            .with("seq", Value::Int64(seq))
            .with("ts", Value::Int64(now_ms));
        match self {
            Quickstart::Orders => {
                let key = format!("customer-{entity}");
                let (product, price) = *pick(rng, PRODUCTS);
                let value = base
                    .with("order_id", format!("o-{task}-{seq}"))
                    .with("customer_id", key.clone())
                    .with("product", product)
                    .with("quantity", Value::Int32(rng.random_range(1..5)))
                    .with("unit_price", price)
                    .with("status", *pick(rng, STATUSES));
                (key, Value::Struct(value))
            }
            Quickstart::Iot => {
                let key = format!("device-{entity}");
                let value = base
                    .with("device_id", key.clone())
                    .with("sensor", *pick(rng, SENSORS))
                    .with("temperature_c", (rng.random_range(-200..450) as f64) / 10.0)
                    .with("humidity_pct", (rng.random_range(100..950) as f64) / 10.0)
                    .with("battery_pct", Value::Int32(rng.random_range(5..101)));
                (key, Value::Struct(value))
            }
            Quickstart::Clickstream => {
                let key = format!("user-{entity}");
                let value = base
                    .with("session_id", format!("s-{entity}-{}", seq / 20))
                    .with("user_id", key.clone())
                    .with("page", *pick(rng, PAGES))
                    .with("referrer", *pick(rng, REFERRERS))
                    .with("user_agent", *pick(rng, AGENTS));
                (key, Value::Struct(value))
            }
        }
    }
}
