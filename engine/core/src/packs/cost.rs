//! Declared cost against the planner's estimate: `quarry check` with a database
//! reads each branch's `EXPLAIN (FORMAT JSON)` plan and says, feature by feature,
//! why a `light` operation looks too expensive to answer synchronously (or a
//! `heavy` one cheap enough to). Estimates come from the statistics of the
//! database checked against: run it against data of a realistic size.

use serde_json::Value;

/// What counts as too expensive for a synchronous answer.
#[derive(Debug, Clone, Copy)]
pub struct CostBudget {
    /// Highest planner total cost for a `light` operation.
    pub max_cost: f64,
    /// A sequential scan or sort of more estimated rows than this is named.
    pub large_rows: f64,
}

impl Default for CostBudget {
    fn default() -> Self {
        CostBudget {
            max_cost: 200_000.0,
            large_rows: 500_000.0,
        }
    }
}

/// The plan's features that matter for the cost class.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanCost {
    /// The root's total cost estimate.
    pub total_cost: f64,
    /// The root's estimated rows.
    pub rows: f64,
    /// Large sequential scans: (relation, estimated rows).
    pub seq_scans: Vec<(String, f64)>,
    /// Sorts of many rows (estimated rows).
    pub sorts: Vec<f64>,
}

impl PlanCost {
    /// Reads the top `Plan` object of `EXPLAIN (FORMAT JSON)`.
    pub fn of(plan: &Value, budget: &CostBudget) -> PlanCost {
        let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let mut out = PlanCost {
            total_cost: num(plan, "Total Cost"),
            rows: num(plan, "Plan Rows"),
            ..Default::default()
        };
        let mut stack = vec![plan];
        while let Some(node) = stack.pop() {
            let rows = num(node, "Plan Rows");
            match node.get("Node Type").and_then(Value::as_str) {
                Some("Seq Scan") if rows > budget.large_rows => {
                    let rel = node
                        .get("Relation Name")
                        .and_then(Value::as_str)
                        .unwrap_or("?");
                    let schema = node.get("Schema").and_then(Value::as_str);
                    let name = schema.map_or(rel.to_string(), |s| format!("{s}.{rel}"));
                    out.seq_scans.push((name, rows));
                }
                Some("Sort") if rows > budget.large_rows => out.sorts.push(rows),
                _ => {}
            }
            if let Some(children) = node.get("Plans").and_then(Value::as_array) {
                stack.extend(children);
            }
        }
        out
    }

    /// Why a `light` operation with this plan should be `heavy`, if it should.
    pub fn too_heavy(&self, budget: &CostBudget) -> Option<String> {
        let mut why = Vec::new();
        if self.total_cost > budget.max_cost {
            why.push(format!(
                "estimated cost {:.0} is over the budget of {:.0}",
                self.total_cost, budget.max_cost
            ));
        }
        let mut scans: Vec<String> = Vec::new();
        for (rel, rows) in &self.seq_scans {
            let s = format!("a sequential scan of {rel} (~{rows:.0} rows)");
            if !scans.contains(&s) {
                scans.push(s);
            }
        }
        why.extend(scans);
        let mut sorts = self.sorts.clone();
        sorts.sort_by(|a, b| b.total_cmp(a));
        sorts.dedup();
        for rows in sorts {
            why.push(format!("a sort of ~{rows:.0} rows"));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// True when a `heavy` operation's plan would answer synchronously with room to spare.
    pub fn light_enough(&self, budget: &CostBudget) -> bool {
        self.total_cost * 10.0 < budget.max_cost
            && self.seq_scans.is_empty()
            && self.sorts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn large_scans_and_sorts_are_named_and_cheap_plans_pass() {
        let b = CostBudget::default();
        let plan = json!({"Node Type": "Sort", "Total Cost": 350000.7, "Plan Rows": 900000,
            "Plans": [{"Node Type": "Seq Scan", "Schema": "canonical", "Relation Name": "orders", "Plan Rows": 900000, "Total Cost": 20000}]});
        let c = PlanCost::of(&plan, &b);
        assert_eq!(c.seq_scans, [("canonical.orders".to_string(), 900000.0)]);
        assert_eq!(
            c.too_heavy(&b).as_deref(),
            Some("estimated cost 350001 is over the budget of 200000; a sequential scan of canonical.orders (~900000 rows); a sort of ~900000 rows")
        );
        assert!(!c.light_enough(&b));
        let small = json!({"Node Type": "Index Scan", "Total Cost": 8.3, "Plan Rows": 1});
        let c = PlanCost::of(&small, &b);
        assert_eq!(c.too_heavy(&b), None);
        assert!(c.light_enough(&b));
    }
}
