//! The record stream of one file: sessions of skewed visitors, a funnel, and dirt at configured rates.
//!
//! Only `ChaCha8Rng::next_u64` is used for randomness (with the conversions below), so the stream
//! depends on nothing but the seed and `rand_chacha`'s stable ChaCha8 stream.

use std::collections::VecDeque;
use std::fmt::Write as _;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::geoip::{geo_tables, GeoTables};
use super::{DirtyCounts, GenerateOptions, OutputFormat};

/// 30 minutes in microseconds: the session timeout of the pipeline.
pub const SESSION_GAP_US: i64 = 1_800_000_000;

const US_PER_SEC: i64 = 1_000_000;
const US_PER_HOUR: i64 = 3_600 * US_PER_SEC;
const US_PER_DAY: i64 = 24 * US_PER_HOUR;

/// Field positions in a record.
pub(crate) const EVENT_ID: usize = 0;
pub(crate) const USER_ID: usize = 1;
pub(crate) const EVENT_TIME: usize = 2;
pub(crate) const EVENT_TYPE: usize = 3;
pub(crate) const URL: usize = 4;
pub(crate) const REFERRER: usize = 5;
pub(crate) const IP: usize = 6;
pub(crate) const USER_AGENT: usize = 7;
pub(crate) const REVENUE: usize = 8;

/// One input record as delivered. `None` is an absent value (empty in CSV, `null` in JSON and Parquet);
/// `Some("")` an empty string (empty in CSV, `""` in JSON and Parquet).
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub fields: [Option<String>; 9],
    /// Bit i set: quote field i in CSV even though it does not need quoting.
    pub force_quote: u16,
    /// Text formats only: break the record this way (the encoder picks the concrete damage).
    pub malformed: Option<u8>,
}

/// Everything shared by the files of one run.
pub(crate) struct Ctx {
    pub format: OutputFormat,
    pub events: u64,
    pub files: u64,
    seed: u64,
    users: u64,
    start_us: i64,
    day_cum: Vec<f64>,
    dirty: super::DirtyRates,
    geo: &'static GeoTables,
    id_key: u64,
    user_key: u64,
}

impl Ctx {
    pub fn new(options: &GenerateOptions) -> Self {
        let start_us = options.start.timestamp_micros();
        let days = options.days.max(1);
        // Weekly rhythm: weekdays busier than weekends, Thursday the peak.
        const WEEKDAY: [f64; 7] = [1.0, 1.02, 1.0, 1.08, 0.95, 0.78, 0.84]; // Mon..Sun
        let mut day_cum = Vec::with_capacity(days as usize);
        let mut acc = 0.0;
        for d in 0..days {
            let t = chrono::DateTime::from_timestamp_micros(start_us + i64::from(d) * US_PER_DAY)
                .unwrap_or(options.start);
            let wd = chrono::Datelike::weekday(&t).num_days_from_monday() as usize;
            acc += WEEKDAY[wd];
            day_cum.push(acc);
        }
        Ctx {
            format: options.format,
            events: options.events,
            files: options.files.max(1) as u64,
            seed: options.seed,
            users: options.effective_users(),
            start_us,
            day_cum,
            dirty: options.dirty.clone(),
            geo: geo_tables(),
            id_key: mix64(options.seed ^ 0x6576_656e_745f_6964),
            user_key: mix64(options.seed ^ 0x7573_6572_5f69_6473),
        }
    }

    /// How many records file `file` holds: an even split, the first files one more.
    pub fn file_events(&self, file: u64) -> u64 {
        let base = self.events / self.files;
        base + u64::from(file < self.events % self.files)
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness helpers (no float transcendental functions in the hot parts except powf/ln below).

pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && uniform(rng) < p
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[below(rng, items.len() as u64) as usize]
}

/// Zipf-like rank in `0..n` with exponent `s` (continuous power-law approximation).
fn zipf(rng: &mut ChaCha8Rng, n: u64, s: f64) -> u64 {
    let u = uniform(rng);
    let nf = n as f64 + 1.0;
    let x = if (s - 1.0).abs() < 1e-9 {
        nf.powf(u)
    } else {
        let a = 1.0 - s;
        ((nf.powf(a) - 1.0) * u + 1.0).powf(1.0 / a)
    };
    (x.floor() as u64).clamp(1, n.max(1)) - 1
}

fn pick_cum(rng: &mut ChaCha8Rng, cum: &[f64]) -> usize {
    let x = uniform(rng) * cum.last().copied().unwrap_or(1.0);
    cum.partition_point(|c| *c <= x).min(cum.len() - 1)
}

// ---------------------------------------------------------------------------------------------
// Vocabulary.

const HOST: &str = "https://shop.example.com";

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36 Edg/121.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.6261.64 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.178 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
];
/// Relative weights of the user agents (desktop and mobile browsers dominate, bots are rare).
const UA_WEIGHTS: &[f64] = &[
    22.0, 8.0, 9.0, 7.0, 4.0, 5.0, 18.0, 4.0, 9.0, 7.0, 3.0, 1.5, 1.0, 0.5,
];

const REFERRERS: &[&str] = &[
    "https://www.google.com/",
    "https://www.google.de/",
    "https://www.bing.com/search?q=shop",
    "https://duckduckgo.com/",
    "https://www.facebook.com/",
    "https://l.instagram.com/",
    "https://t.co/x7Qz9",
    "https://news.ycombinator.com/",
    "https://www.reddit.com/r/deals/",
    "https://mail.example.net/newsletter?id=2024-03&utm_source=newsletter",
    "android-app://com.google.android.gm/",
];
const REFERRER_WEIGHTS: &[f64] = &[38.0, 4.0, 6.0, 3.0, 9.0, 6.0, 3.0, 1.0, 2.0, 5.0, 1.0];

const CATEGORIES: &[&str] = &[
    "shoes",
    "jackets",
    "bags",
    "electronics",
    "kitchen",
    "garden",
    "toys",
    "books",
    "beauty",
    "sports",
    "home-decor",
    "sale",
];

const SEARCHES: &[&str] = &[
    "running+shoes",
    "usb-c+cable",
    "red,blue",
    "gift+ideas",
    "rain+jacket",
    "coffee+grinder",
    "lego",
    "size+42",
    "caf%C3%A9+mug",
    "headphones,wireless",
];

const PRODUCTS: u64 = 5_000;

const BAD_TIMES: &[&str] = &[
    "",
    "not-a-date",
    "2024-02-30T12:00:00Z",
    "2024-03-01T12:61:00Z",
    "2024-03-01T25:10:00Z",
    "2024/03/01 12:00:00",
    "1709294400",
    "03/01/2024 10:15",
    "yesterday",
    "2024-13-01T00:00:00Z",
];

const BAD_TYPES: &[&str] = &[
    "pageview",
    "page-view",
    "buy",
    "",
    "unknown",
    "scroll",
    "add to cart",
    "null",
    "purchased",
];

const INVALID_IPS: &[&str] = &[
    "300.1.2.3",
    "abc",
    "1.2.3",
    "10.0.0.256",
    "1.2.3.4.5",
    "::1",
    "192.168.1.-1",
    "unknown",
    "999.999.999.999",
];

const BAD_REVENUES: &[&str] = &[
    "-5.00", "-0.01", "12.345", "9.999", "abc", "1,000.00", "$19.99", "12.3.4", "N/A",
];

/// Offsets in minutes for events written with a local time.
const OFFSETS: &[i32] = &[60, 120, -300, -480, 330, 540, -210, 0, 600, -180, 345];

// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Home,
    Category(usize),
    Product(u64),
    Search(usize),
    Cart,
    Checkout,
}

impl Page {
    fn path(self) -> String {
        match self {
            Page::Home => "/".to_string(),
            Page::Category(c) => format!("/category/{}", CATEGORIES[c]),
            Page::Product(p) => format!("/product/{p}"),
            Page::Search(s) => format!("/search?q={}", SEARCHES[s]),
            Page::Cart => "/cart".to_string(),
            Page::Checkout => "/checkout".to_string(),
        }
    }
}

struct Session {
    user_id: String,
    ip: String,
    user_agent: &'static str,
    remaining: u32,
    /// Current event time in microseconds since the epoch.
    t: i64,
    /// Time resolution of this session's clock: 1 (µs), 1,000 (ms) or 1,000,000 (s).
    unit: i64,
    page: Page,
    prev_url: Option<String>,
    cart_cents: i64,
    first: bool,
}

/// The record stream of one file.
pub(crate) struct FileGen<'a> {
    ctx: &'a Ctx,
    file: u64,
    rng: ChaCha8Rng,
    /// Decides where duplicates of the previous file's records go; independent of `rng` so that a
    /// file's own stream does not depend on them.
    xrng: ChaCha8Rng,
    seq: u64,
    session: Option<Session>,
    recent: VecDeque<Record>,
    pool: Vec<Record>,
    pub counts: DirtyCounts,
}

const RECENT: usize = 256;
const POOL: u64 = 64;

impl<'a> FileGen<'a> {
    /// The generator of file `file`. With `cross_file`, it also redelivers some records of the previous
    /// file (which it regenerates: a file's main stream depends only on the seed and its index).
    pub fn new(ctx: &'a Ctx, file: u64, cross_file: bool) -> Self {
        let fseed = mix64(ctx.seed ^ mix64(file.wrapping_mul(0x1000_0000_01b3) ^ 0x6669_6c65));
        let mut gen = FileGen {
            ctx,
            file,
            rng: ChaCha8Rng::seed_from_u64(fseed),
            xrng: ChaCha8Rng::seed_from_u64(mix64(fseed ^ 0x78_66_69_6c_65)),
            seq: 0,
            session: None,
            recent: VecDeque::with_capacity(RECENT),
            pool: Vec::new(),
            counts: DirtyCounts::default(),
        };
        if cross_file && file > 0 && ctx.dirty.duplicate > 0.0 {
            let mut prev = FileGen::new(ctx, file - 1, false);
            let n = ctx.file_events(file - 1).min(POOL);
            let mut pool: Vec<Record> = (0..n)
                .map(|_| prev.next_main())
                .filter(|r| r.malformed.is_none())
                .collect();
            // Shuffle (Fisher-Yates) so redeliveries come in a different order.
            for i in (1..pool.len()).rev() {
                let j = below(&mut gen.xrng, i as u64 + 1) as usize;
                pool.swap(i, j);
            }
            gen.pool = pool;
        }
        gen
    }

    /// The next record of the file.
    pub fn next_record(&mut self) -> Record {
        if !self.pool.is_empty() && chance(&mut self.xrng, self.ctx.dirty.duplicate * 0.25) {
            if let Some(r) = self.pool.pop() {
                self.counts.duplicate += 1;
                return r;
            }
        }
        self.next_main()
    }

    /// The next record of the file's own stream.
    fn next_main(&mut self) -> Record {
        let rates = &self.ctx.dirty;
        if !self.recent.is_empty() && chance(&mut self.rng, rates.duplicate) {
            let i = below(&mut self.rng, self.recent.len() as u64) as usize;
            let mut r = self.recent[i].clone();
            if chance(&mut self.rng, 0.4) {
                // Redelivered through another path: same event_id and event_time, other details differ.
                r.fields[IP] = Some(self.random_ip());
                r.fields[USER_AGENT] = Some((*pick(&mut self.rng, USER_AGENTS)).to_string());
                r.force_quote = 0;
            }
            self.counts.duplicate += 1;
            return r;
        }
        let mut r = self.fresh();
        self.dirty(&mut r);
        if r.malformed.is_none() {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(r.clone());
        }
        r
    }

    fn event_id(&mut self) -> String {
        let n = (self.file << 40) | self.seq;
        self.seq += 1;
        format!("evt_{:016x}", mix64(n ^ self.ctx.id_key))
    }

    fn new_session(&mut self) -> Session {
        let ctx = self.ctx;
        let rank = zipf(&mut self.rng, ctx.users, 0.8);
        let uhash = mix64(rank ^ ctx.user_key);
        // Per-user traits come from the user's own stream, so they are the same in every file.
        let mut urng = ChaCha8Rng::seed_from_u64(uhash);
        let home_ip = ip_from(&mut urng, ctx.geo);
        let ua_cum: Vec<f64> = cumulative(UA_WEIGHTS);
        let user_agent = USER_AGENTS[pick_cum(&mut urng, &ua_cum)];
        let ip = if chance(&mut self.rng, 0.8) {
            home_ip
        } else {
            self.random_ip()
        };

        // Start: a day by weekly rhythm, an hour by daily rhythm.
        let day = pick_cum(&mut self.rng, &ctx.day_cum) as i64;
        let hour = pick_cum(&mut self.rng, &HOUR_CUM) as i64;
        let within = below(&mut self.rng, US_PER_HOUR as u64) as i64;
        let unit = match below(&mut self.rng, 20) {
            0..=11 => 1,
            12..=16 => 1_000,
            _ => US_PER_SEC,
        };
        let t = ctx.start_us + day * US_PER_DAY + hour * US_PER_HOUR + within;
        let t = t - t.rem_euclid(unit);
        // Session length: 1 + geometric, mean about 4.5; a third are bounces.
        let mut remaining = 1;
        while remaining < 60 && chance(&mut self.rng, 0.72) {
            remaining += 1;
        }
        let page = match below(&mut self.rng, 20) {
            0..=5 => Page::Home,
            6..=10 => Page::Category(below(&mut self.rng, CATEGORIES.len() as u64) as usize),
            11..=17 => Page::Product(zipf(&mut self.rng, PRODUCTS, 0.9) + 1),
            _ => Page::Search(below(&mut self.rng, SEARCHES.len() as u64) as usize),
        };
        Session {
            user_id: format!("u_{uhash:016x}"),
            ip,
            user_agent,
            remaining,
            t,
            unit,
            page,
            prev_url: None,
            cart_cents: 0,
            first: true,
        }
    }

    fn random_ip(&mut self) -> String {
        ip_from(&mut self.rng, self.ctx.geo)
    }

    fn gap(&mut self, step: i64) -> i64 {
        let r = uniform(&mut self.rng);
        if r < 0.004 {
            SESSION_GAP_US
        } else if r < 0.008 {
            SESSION_GAP_US - step
        } else if r < 0.012 {
            SESSION_GAP_US + step
        } else if r < 0.02 {
            0
        } else if r < 0.04 {
            // Comes back later: a new session for the pipeline.
            (31 * 60 + below(&mut self.rng, 150 * 60) as i64) * US_PER_SEC
                + below(&mut self.rng, 1_000_000) as i64
        } else {
            // Log-normal think time around 40 s, kept under 29 minutes.
            let u1 = uniform(&mut self.rng).max(1e-12);
            let u2 = uniform(&mut self.rng);
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let secs = (40.0f64.ln() + 1.1 * z).exp();
            let us = (secs * 1e6) as i64;
            if us >= 29 * 60 * US_PER_SEC {
                (5 * 60 + below(&mut self.rng, 24 * 60) as i64) * US_PER_SEC
            } else {
                us.max(1)
            }
        }
    }

    fn fresh(&mut self) -> Record {
        let mut s = match self.session.take() {
            Some(s) if s.remaining > 0 => s,
            _ => self.new_session(),
        };
        let event_id = self.event_id();
        let (event_type, revenue) = if s.first {
            ("page_view", None)
        } else {
            let g = self.gap(s.unit);
            s.t += g - g.rem_euclid(s.unit);
            let r = uniform(&mut self.rng);
            if s.cart_cents > 0 && r < 0.22 {
                let cents = s.cart_cents;
                s.cart_cents = 0;
                s.page = Page::Checkout;
                ("purchase", Some(format_cents(cents, &mut self.rng)))
            } else if matches!(s.page, Page::Product(_)) && r < 0.45 {
                let Page::Product(p) = s.page else { unreachable!() };
                let qty = if chance(&mut self.rng, 0.85) {
                    1
                } else {
                    2 + below(&mut self.rng, 3) as i64
                };
                s.cart_cents += price_cents(p) * qty;
                ("add_to_cart", None)
            } else if r < 0.62 {
                ("click", None)
            } else {
                s.page = match below(&mut self.rng, 20) {
                    0..=2 => Page::Home,
                    3..=6 => Page::Category(below(&mut self.rng, CATEGORIES.len() as u64) as usize),
                    7..=15 => Page::Product(zipf(&mut self.rng, PRODUCTS, 0.9) + 1),
                    16..=17 => Page::Search(below(&mut self.rng, SEARCHES.len() as u64) as usize),
                    _ if s.cart_cents > 0 => Page::Cart,
                    _ => Page::Home,
                };
                ("page_view", None)
            }
        };
        let url = s.page.path();
        let referrer = if s.first {
            let cum = cumulative(REFERRER_WEIGHTS);
            // About a third of the visits are direct: no referrer.
            if chance(&mut self.rng, 0.3) {
                None
            } else {
                Some(REFERRERS[pick_cum(&mut self.rng, &cum)].to_string())
            }
        } else {
            s.prev_url.as_ref().map(|u| format!("{HOST}{u}"))
        };
        let time = format_time(s.t, s.unit, &mut self.rng);
        let record = Record {
            fields: [
                Some(event_id),
                Some(s.user_id.clone()),
                Some(time),
                Some(event_type.to_string()),
                Some(url.clone()),
                referrer,
                Some(s.ip.clone()),
                Some(s.user_agent.to_string()),
                revenue,
            ],
            force_quote: 0,
            malformed: None,
        };
        s.prev_url = Some(url);
        s.first = false;
        s.remaining -= 1;
        self.session = Some(s);
        record
    }

    /// Make a fresh record dirty at the configured rates. Every kind is drawn independently.
    fn dirty(&mut self, r: &mut Record) {
        let rates = self.ctx.dirty.clone();
        let rng = &mut self.rng;
        let c = &mut self.counts;
        if chance(rng, rates.tz_offset) {
            if let Some(t) = parse_back(r.fields[EVENT_TIME].as_deref()) {
                let off = *pick(rng, OFFSETS);
                r.fields[EVENT_TIME] = Some(with_offset(t.0, t.1, off));
                c.tz_offset += 1;
            }
        }
        if chance(rng, rates.bad_time) {
            r.fields[EVENT_TIME] = Some(pick(rng, BAD_TIMES).to_string());
            c.bad_time += 1;
        }
        if chance(rng, rates.bad_type) {
            r.fields[EVENT_TYPE] = Some(pick(rng, BAD_TYPES).to_string());
            c.bad_type += 1;
        } else if chance(rng, rates.bad_type) {
            // Valid per the spec: case-insensitive, surrounding spaces ignored.
            let t = r.fields[EVENT_TYPE].take().unwrap_or_default();
            r.fields[EVENT_TYPE] = Some(match below(rng, 4) {
                0 => t.to_uppercase(),
                1 => format!(" {t} "),
                2 => {
                    let mut cs = t.chars();
                    cs.next()
                        .map(|f| f.to_uppercase().chain(cs).collect())
                        .unwrap_or_default()
                }
                _ => format!("  {}", t.replace("_v", "_V")),
            });
            c.odd_type += 1;
        }
        if chance(rng, rates.missing_id) {
            let field = if chance(rng, 0.5) { EVENT_ID } else { USER_ID };
            r.fields[field] = match below(rng, 3) {
                0 => Some(String::new()),
                1 => Some("   ".to_string()),
                _ if self.ctx.format == OutputFormat::Ndjson || self.ctx.format == OutputFormat::Parquet => {
                    None
                }
                _ => Some(" ".to_string()),
            };
            c.missing_id += 1;
        } else if chance(rng, rates.missing_id) {
            // Valid: user ids are trimmed.
            if let Some(u) = r.fields[USER_ID].take() {
                r.fields[USER_ID] = Some(format!("  {u} "));
            }
            c.padded_id += 1;
        }
        if chance(rng, rates.invalid_ip) {
            r.fields[IP] = Some(pick(rng, INVALID_IPS).to_string());
            c.invalid_ip += 1;
        }
        if chance(rng, rates.empty_optional) {
            const OPTIONAL: [usize; 5] = [URL, REFERRER, IP, USER_AGENT, REVENUE];
            let n = 1 + below(rng, 2);
            for _ in 0..n {
                let f = OPTIONAL[below(rng, OPTIONAL.len() as u64) as usize];
                r.fields[f] = if chance(rng, 0.5) {
                    None
                } else {
                    Some(String::new())
                };
            }
            c.empty_optional += 1;
        }
        if chance(rng, rates.bad_revenue) {
            r.fields[REVENUE] = Some(pick(rng, BAD_REVENUES).to_string());
            c.bad_revenue += 1;
        }
        if chance(rng, rates.quoted) {
            match below(rng, 4) {
                0 => {
                    r.fields[USER_AGENT] = Some(
                        "Mozilla/5.0 (compatible; \"QuoteBot\", v2)\nsecond line of the agent".to_string(),
                    )
                }
                1 => r.fields[URL] = Some("/search?q=\"red, blue\",shoes".to_string()),
                2 => {
                    r.fields[REFERRER] = Some(format!("{HOST}/product/7?note=line1\r\nline2,\"x\""));
                }
                _ => {
                    // Legal but needless quotes around plain fields.
                    r.force_quote = 1 << EVENT_ID | 1 << EVENT_TYPE | 1 << IP;
                }
            }
            c.quoted += 1;
        }
        if self.ctx.format != OutputFormat::Parquet && chance(rng, rates.malformed) {
            r.malformed = Some(below(rng, 256) as u8);
            c.malformed += 1;
        }
    }
}

fn cumulative(w: &[f64]) -> Vec<f64> {
    let mut acc = 0.0;
    w.iter()
        .map(|x| {
            acc += x;
            acc
        })
        .collect()
}

/// Sessions starting per UTC hour: quiet at night, peaks late morning and evening.
const HOUR_CUM: [f64; 24] = {
    const W: [f64; 24] = [
        0.35, 0.25, 0.18, 0.14, 0.13, 0.16, 0.28, 0.5, 0.75, 0.9, 1.0, 1.05, 1.1, 1.05, 1.0, 1.0, 1.05, 1.15,
        1.3, 1.45, 1.5, 1.35, 1.0, 0.6,
    ];
    let mut out = [0.0; 24];
    let mut acc = 0.0;
    let mut i = 0;
    while i < 24 {
        acc += W[i];
        out[i] = acc;
        i += 1;
    }
    out
};

fn ip_from(rng: &mut ChaCha8Rng, geo: &GeoTables) -> String {
    let addr = if !geo.gaps.is_empty() && chance(rng, 0.01) {
        let (s, e) = *pick(rng, &geo.gaps);
        s + below(rng, u64::from(e - s) + 1) as u32
    } else {
        let c = zipf(rng, geo.countries.len() as u64, 1.0) as usize;
        let r = pick(rng, &geo.countries[c]);
        r.start + below(rng, u64::from(r.end - r.start) + 1) as u32
    };
    std::net::Ipv4Addr::from(addr).to_string()
}

fn price_cents(product: u64) -> i64 {
    let h = mix64(product ^ 0x0070_7269_6365);
    // 4.99 .. 299.99, mostly cheap.
    let base = 499 + (h % 30_000) as i64 * (h >> 40 & 3) as i64 / 3;
    base - base % 100 + 99 - if h & 8 == 0 { 0 } else { 49 }
}

fn format_cents(cents: i64, rng: &mut ChaCha8Rng) -> String {
    let (whole, frac) = (cents / 100, cents % 100);
    if frac % 10 == 0 && chance(rng, 0.3) {
        if frac == 0 {
            format!("{whole}")
        } else {
            format!("{whole}.{}", frac / 10)
        }
    } else {
        format!("{whole}.{frac:02}")
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z` for `t` µs, at the session's resolution. Some
/// microsecond times carry three extra nanosecond digits (truncated by the pipeline).
fn format_time(t: i64, unit: i64, rng: &mut ChaCha8Rng) -> String {
    let mut s = String::with_capacity(32);
    write_local(&mut s, t, unit);
    if unit == 1 && chance(rng, 0.05) {
        let _ = write!(s, "{:03}", below(rng, 1000));
    }
    s.push('Z');
    s
}

fn write_local(s: &mut String, t: i64, unit: i64) {
    let dt = chrono::DateTime::from_timestamp_micros(t)
        .unwrap_or_default()
        .naive_utc();
    let _ = write!(s, "{}", dt.format("%Y-%m-%dT%H:%M:%S"));
    let micros = t.rem_euclid(US_PER_SEC);
    match unit {
        1 => {
            let _ = write!(s, ".{micros:06}");
        }
        1_000 => {
            let _ = write!(s, ".{:03}", micros / 1_000);
        }
        _ => {}
    }
}

/// Recover (µs, resolution) from a time this module formatted (UTC, `Z`).
fn parse_back(text: Option<&str>) -> Option<(i64, i64)> {
    let text = text?.strip_suffix('Z')?;
    let (main, frac) = text.split_once('.').unwrap_or((text, ""));
    let dt = chrono::NaiveDateTime::parse_from_str(main, "%Y-%m-%dT%H:%M:%S").ok()?;
    let base = dt.and_utc().timestamp_micros();
    let digits = &frac[..frac.len().min(6)];
    let (unit, add) = match digits.len() {
        0 => (US_PER_SEC, 0),
        3 => (1_000, digits.parse::<i64>().ok()? * 1_000),
        6 => (1, digits.parse::<i64>().ok()?),
        _ => return None,
    };
    Some((base + add, unit))
}

/// The same instant as local time at `offset_min` minutes east of UTC: `...±HH:MM`.
fn with_offset(t: i64, unit: i64, offset_min: i32) -> String {
    let mut s = String::with_capacity(32);
    write_local(&mut s, t + i64::from(offset_min) * 60 * US_PER_SEC, unit);
    let sign = if offset_min < 0 { '-' } else { '+' };
    let a = offset_min.abs();
    let _ = write!(s, "{sign}{:02}:{:02}", a / 60, a % 60);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_keep_the_instant() {
        let t = 1_709_251_200_123_456; // 2024-03-01T00:00:00.123456Z
        assert_eq!(with_offset(t, 1, -300), "2024-02-29T19:00:00.123456-05:00");
        assert_eq!(with_offset(t, 1, 330), "2024-03-01T05:30:00.123456+05:30");
        let parsed = chrono::DateTime::parse_from_rfc3339(&with_offset(t, 1, 345)).unwrap();
        assert_eq!(parsed.timestamp_micros(), t);
        assert_eq!(parse_back(Some("2024-03-01T00:00:00.123456Z")), Some((t, 1)));
        assert_eq!(
            parse_back(Some("2024-03-01T00:00:00.123Z")),
            Some((t - 456, 1_000))
        );
        assert_eq!(
            parse_back(Some("2024-03-01T00:00:00Z")),
            Some((t - 123_456, US_PER_SEC))
        );
    }

    #[test]
    fn prices_are_positive() {
        for p in 1..=PRODUCTS {
            let c = price_cents(p);
            assert!((400..=40_000).contains(&c), "{p}: {c}");
        }
    }
}
