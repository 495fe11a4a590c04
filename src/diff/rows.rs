//! The row stage of a diff: bucket fingerprints over both sides, then the rows of the buckets that
//! differ, compared by key or as multisets, doubles within a tolerance.

use std::collections::hash_map::DefaultHasher;

use super::*;

/// A cell as the comparison sees it.
#[derive(Clone, Debug)]
enum Cell {
    Null,
    Float(f64),
    Text(String),
}

impl Cell {
    fn same(&self, other: &Cell, tolerance: f64) -> bool {
        match (self, other) {
            (Cell::Null, Cell::Null) => true,
            (Cell::Float(a), Cell::Float(b)) => {
                (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tolerance * a.abs().max(b.abs())
            }
            (Cell::Text(a), Cell::Text(b)) => a == b,
            _ => false,
        }
    }

    fn text(&self) -> String {
        match self {
            Cell::Null => "NULL".to_string(),
            Cell::Float(v) => format!("{v}"),
            Cell::Text(t) => t.clone(),
        }
    }
}

type Row = Vec<Cell>;

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float64 | DataType::Float32 | DataType::Float16)
}

/// Bits of a double's mantissa kept for hashing: cells no wider than the tolerance, so two values
/// further apart than it never hash alike (values closer may, or may not: those buckets are then
/// compared row by row).
fn kept_bits(tolerance: f64) -> u32 {
    if tolerance <= 0.0 {
        52
    } else {
        ((-tolerance.log2()).ceil().max(0.0) as u32).min(52)
    }
}

fn normalized(col: &ArrayRef, bits: u32) -> Result<ArrayRef> {
    if !is_float(col.data_type()) {
        return Ok(col.clone());
    }
    let f = arrow::compute::cast(col, &DataType::Float64)?;
    let f = f
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("cast to Float64");
    let mask: u64 = !((1u64 << (52 - bits)) - 1);
    let out: arrow::array::Int64Array = f
        .iter()
        .map(|v| {
            v.map(|v| {
                if v.is_nan() {
                    i64::MAX
                } else if v == 0.0 {
                    0
                } else {
                    (v.to_bits() & mask) as i64
                }
            })
        })
        .collect();
    Ok(Arc::new(out))
}

struct Hashed {
    row_hashes: Vec<u64>,
    key_hashes: Vec<u64>,
}

fn hash_rows(batch: &RecordBatch, key_idx: &[usize], bits: u32) -> Result<Hashed> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| normalized(c, bits))
        .collect::<Result<_>>()?;
    let fields: Vec<SortField> = columns
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let conv = RowConverter::new(fields)?;
    let rows = conv.convert_columns(&columns)?;
    let hash = |bytes: &[u8]| {
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        h.finish()
    };
    let row_hashes: Vec<u64> = (0..batch.num_rows())
        .map(|i| hash(rows.row(i).as_ref()))
        .collect();
    let key_hashes = if key_idx.is_empty() {
        row_hashes.clone()
    } else {
        let key_cols: Vec<ArrayRef> = key_idx.iter().map(|i| columns[*i].clone()).collect();
        let kconv = RowConverter::new(
            key_cols
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect(),
        )?;
        let krows = kconv.convert_columns(&key_cols)?;
        (0..batch.num_rows())
            .map(|i| hash(krows.row(i).as_ref()))
            .collect()
    };
    Ok(Hashed {
        row_hashes,
        key_hashes,
    })
}

fn cells(batch: &RecordBatch, i: usize) -> Result<Row> {
    batch
        .columns()
        .iter()
        .map(|c| {
            if c.is_null(i) {
                return Ok(Cell::Null);
            }
            if let Some(f) = c.as_any().downcast_ref::<Float64Array>() {
                return Ok(Cell::Float(f.value(i)));
            }
            if let Some(f) = c.as_any().downcast_ref::<Float32Array>() {
                return Ok(Cell::Float(f64::from(f.value(i))));
            }
            Ok(Cell::Text(array_value_to_string(c, i)?))
        })
        .collect()
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Fingerprint {
    count: u64,
    sum: u64,
    xor: u64,
}

async fn scan(
    floe: &Floe,
    side: &DiffSide,
) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
    let options = ScanOptions {
        at: Some(side.at.clone()),
        ..Default::default()
    };
    Ok(floe.scan(&side.table, &options).await?.batches)
}

/// One side's bucket fingerprints.
async fn fingerprints(
    floe: &Floe,
    side: &DiffSide,
    key_idx: &[usize],
    bits: u32,
    n: usize,
) -> Result<Vec<Fingerprint>> {
    let mut fp = vec![Fingerprint::default(); n];
    let mut batches = scan(floe, side).await?;
    while let Some(batch) = batches.try_next().await? {
        let h = hash_rows(&batch, key_idx, bits)?;
        for (rh, kh) in h.row_hashes.iter().zip(&h.key_hashes) {
            let b = &mut fp[(*kh % n as u64) as usize];
            b.count += 1;
            b.sum = b.sum.wrapping_add(*rh);
            b.xor ^= rh.rotate_left(17);
        }
    }
    Ok(fp)
}

/// One side's rows in the given buckets.
async fn rows_in(
    floe: &Floe,
    side: &DiffSide,
    key_idx: &[usize],
    bits: u32,
    n: usize,
    wanted: &HashSet<usize>,
) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    let mut batches = scan(floe, side).await?;
    while let Some(batch) = batches.try_next().await? {
        let h = hash_rows(&batch, key_idx, bits)?;
        for (i, kh) in h.key_hashes.iter().enumerate() {
            if wanted.contains(&((*kh % n as u64) as usize)) {
                out.push(cells(&batch, i)?);
            }
        }
    }
    Ok(out)
}

fn as_map(names: &[String], row: &Row) -> BTreeMap<String, String> {
    names.iter().cloned().zip(row.iter().map(Cell::text)).collect()
}

/// The part of a row compared exactly (everything but doubles), as one string.
fn exact_part(row: &Row, idx: &[usize]) -> String {
    idx.iter()
        .map(|i| match &row[*i] {
            Cell::Float(_) => String::new(),
            c => c.text(),
        })
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

fn floats(row: &Row) -> Vec<f64> {
    row.iter()
        .filter_map(|c| if let Cell::Float(f) = c { Some(*f) } else { None })
        .collect()
}

pub(super) async fn compare(
    floe: &Floe,
    left: &DiffSide,
    right: &DiffSide,
    l: &Loaded,
    options: &DiffOptions,
    report: &mut DiffReport,
) -> Result<()> {
    let schema: SchemaRef = Arc::new(iceberg::arrow::schema_to_arrow_schema(&l.schema)?);
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let key_idx: Vec<usize> = match &options.key {
        None => Vec::new(),
        Some(key) => key
            .iter()
            .map(|k| {
                schema
                    .index_of(k)
                    .map_err(|_| Error::invalid(format!("key column {k:?} is not in {}", left.table)))
            })
            .collect::<Result<_>>()?,
    };
    let bits = kept_bits(options.float_tolerance);
    // Enough buckets that the rows of one differing bucket fit the budget (bytes on disk × 4 is a
    // rough in-memory size).
    let bytes: u64 = l
        .table
        .files(l.snapshot.as_ref())
        .await?
        .iter()
        .map(|f| f.file_size_in_bytes)
        .sum();
    let n = ((bytes * 4 / options.memory_limit.max(1) as u64) as usize * 4).clamp(16, 1 << 16);
    report.buckets = n;
    let lf = fingerprints(floe, left, &key_idx, bits, n).await?;
    let rf = fingerprints(floe, right, &key_idx, bits, n).await?;
    let differing: Vec<usize> = (0..n).filter(|b| lf[*b] != rf[*b]).collect();
    report.differing_buckets = differing.len();
    if differing.is_empty() {
        return Ok(());
    }
    // Read the differing buckets back, a budget's worth at a time.
    let per_round = differing.len().div_ceil(
        ((differing.iter().map(|b| lf[*b].count + rf[*b].count).sum::<u64>() as usize * 200)
            / options.memory_limit.max(1))
        .max(1),
    );
    for chunk in differing.chunks(per_round.max(1)) {
        let wanted: HashSet<usize> = chunk.iter().copied().collect();
        let lrows = rows_in(floe, left, &key_idx, bits, n, &wanted).await?;
        let rrows = rows_in(floe, right, &key_idx, bits, n, &wanted).await?;
        if key_idx.is_empty() {
            multiset(&names, lrows, rrows, options, report);
        } else {
            keyed(&names, &key_idx, lrows, rrows, options, report);
        }
    }
    Ok(())
}

fn sample(report: &mut DiffReport, options: &DiffOptions, s: RowSample) {
    if report.samples.len() < options.sample {
        report.samples.push(s);
    }
}

/// Count and sample a row found on one side only (`removed`: left, `added`: right).
fn one_sided(report: &mut DiffReport, options: &DiffOptions, names: &[String], kind: &str, row: &Row) {
    if kind == "removed" {
        report.removed += 1;
    } else {
        report.added += 1;
    }
    let cells = Some(as_map(names, row));
    let (left, right) = if kind == "removed" {
        (cells, None)
    } else {
        (None, cells)
    };
    sample(
        report,
        options,
        RowSample {
            kind: kind.to_string(),
            left,
            right,
            changed_columns: vec![],
        },
    );
}

fn multiset(
    names: &[String],
    left: Vec<Row>,
    right: Vec<Row>,
    options: &DiffOptions,
    report: &mut DiffReport,
) {
    let all: Vec<usize> = (0..names.len()).collect();
    let mut groups: BTreeMap<String, (Vec<Row>, Vec<Row>)> = BTreeMap::new();
    for r in left {
        groups.entry(exact_part(&r, &all)).or_default().0.push(r);
    }
    for r in right {
        groups.entry(exact_part(&r, &all)).or_default().1.push(r);
    }
    let by_floats = |a: &Row, b: &Row| {
        floats(a)
            .partial_cmp(&floats(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    for (_, (mut ls, mut rs)) in groups {
        ls.sort_by(by_floats);
        rs.sort_by(by_floats);
        let (mut i, mut j) = (0, 0);
        while i < ls.len() && j < rs.len() {
            let same = ls[i]
                .iter()
                .zip(&rs[j])
                .all(|(a, b)| a.same(b, options.float_tolerance));
            if same {
                i += 1;
                j += 1;
            } else if by_floats(&ls[i], &rs[j]) == std::cmp::Ordering::Less {
                one_sided(report, options, names, "removed", &ls[i]);
                i += 1;
            } else {
                one_sided(report, options, names, "added", &rs[j]);
                j += 1;
            }
        }
        for r in &ls[i..] {
            one_sided(report, options, names, "removed", r);
        }
        for r in &rs[j..] {
            one_sided(report, options, names, "added", r);
        }
    }
}

fn keyed(
    names: &[String],
    key_idx: &[usize],
    left: Vec<Row>,
    right: Vec<Row>,
    options: &DiffOptions,
    report: &mut DiffReport,
) {
    let key_of = |r: &Row| {
        key_idx
            .iter()
            .map(|i| r[*i].text())
            .collect::<Vec<_>>()
            .join("\u{1f}")
    };
    let mut groups: BTreeMap<String, (Vec<Row>, Vec<Row>)> = BTreeMap::new();
    for r in left {
        groups.entry(key_of(&r)).or_default().0.push(r);
    }
    for r in right {
        groups.entry(key_of(&r)).or_default().1.push(r);
    }
    for (_, (ls, rs)) in groups {
        if ls.len() == 1 && rs.len() == 1 {
            let changed: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| !ls[0][*i].same(&rs[0][*i], options.float_tolerance))
                .map(|(_, n)| n.clone())
                .collect();
            if !changed.is_empty() {
                report.changed += 1;
                sample(
                    report,
                    options,
                    RowSample {
                        kind: "changed".into(),
                        left: Some(as_map(names, &ls[0])),
                        right: Some(as_map(names, &rs[0])),
                        changed_columns: changed,
                    },
                );
            }
        } else {
            // Missing on one side, or a key that is not unique: compare the group as a multiset.
            multiset(names, ls, rs, options, report);
        }
    }
}
