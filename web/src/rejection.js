// The rejection rule, mirroring runtime/rejection.py (rule version 1 and the legacy threshold):
//   accepted <=> d <= tau * ||p_c||^2 * (1 + shot_coef / k_c) * C ** -class_coef
// for a query's nearest prototype p_c (k_c shots) at squared distance d among C classes; files
// whose metadata has no "rejection" section keep the old rule d <= threshold.

import { EdgemetaError, ModelError } from "./errors.js";

export const RULE_VERSION = 1;
export const OPERATING_POINTS = ["strict", "balanced", "off"];

/**
 * @typedef {{tau: number | null, shotCoef: number, classCoef: number, relative: boolean, name: string}} OperatingPoint
 */

/** The metadata's rejection section checked as Python's RejectionRule.from_dict checks it; null when absent. */
export function rejectionRule(section) {
  if (section === undefined || section === null) return null;
  if (typeof section !== "object" || Array.isArray(section)) {
    throw new ModelError("the rejection section of the model metadata must be a JSON object");
  }
  const version = section.version;
  if (!Number.isInteger(version) || version < 1) throw new ModelError("the rejection section of the model metadata has no integer version");
  if (version > RULE_VERSION) {
    throw new ModelError(`rejection rule version ${version} is newer than this edgemeta supports (${RULE_VERSION}); upgrade edgemeta`);
  }
  const tau = section.tau || {};
  const rule = {
    shotCoef: Number(section.shot_coef), classCoef: Number(section.class_coef),
    strict: Number(tau.strict), balanced: Number(tau.balanced),
    farTable: (section.far_table || []).map(([f, t]) => [Number(f), Number(t)]),
  };
  const values = [rule.strict, rule.balanced, ...rule.farTable.map((p) => p[1])];
  if (![rule.shotCoef, rule.classCoef].every((c) => Number.isFinite(c) && c >= 0) || !values.every((v) => Number.isFinite(v) && v > 0)) {
    throw new ModelError("the rejection section needs shot_coef, class_coef >= 0 and positive finite taus");
  }
  const fars = rule.farTable.map((p) => p[0]);
  const increasing = (xs, strict) => xs.every((x, i) => i === 0 || (strict ? x > xs[i - 1] : x >= xs[i - 1]));
  if (!fars.every((f) => f > 0 && f < 1) || !increasing(fars, true) || !increasing(values.slice(2), false)) {
    throw new ModelError("the rejection far_table must be (far, tau) pairs with far in (0, 1), both increasing");
  }
  return rule;
}

/**
 * The operating point asked for, as Python's `operating_point`.
 * @param {object | null} rule from `rejectionRule` @param {number | null} legacyThreshold
 * @param {{reject?: string, far?: number}} options @returns {OperatingPoint}
 */
export function operatingPoint(rule, legacyThreshold, { reject, far } = {}) {
  if (reject !== undefined && reject !== null && !OPERATING_POINTS.includes(reject)) {
    throw new EdgemetaError(`reject must be one of ${OPERATING_POINTS.join(", ")}, got ${JSON.stringify(reject)}`);
  }
  if (far !== undefined && far !== null && !(typeof far === "number" && far > 0 && far < 1)) {
    throw new EdgemetaError(`far must be a false-accept rate strictly between 0 and 1, got ${JSON.stringify(far)}`);
  }
  const hasFar = far !== undefined && far !== null;
  if (hasFar && reject) throw new EdgemetaError("give either reject or far, not both");
  if (reject === "off") return { tau: null, shotCoef: 0, classCoef: 0, relative: false, name: "off" };
  if (hasFar) {
    if (rule === null || rule.farTable.length === 0) {
      throw new EdgemetaError("this model has no false-accept calibration (its metadata has no rejection section); use reject");
    }
    return { tau: tauForFar(rule.farTable, far), shotCoef: rule.shotCoef, classCoef: rule.classCoef, relative: true, name: `far=${far}` };
  }
  const name = reject || "balanced";
  if (rule !== null) return { tau: rule[name], shotCoef: rule.shotCoef, classCoef: rule.classCoef, relative: true, name };
  const tau = legacyThreshold ?? null;
  return { tau, shotCoef: 0, classCoef: 0, relative: false, name: tau === null ? "off" : name };
}

/** tau for a target false-accept rate: linear in log(far) between the table's rows. */
function tauForFar(table, far) {
  const first = table[0][0], last = table[table.length - 1][0];
  if (far < first || far > last) {
    throw new EdgemetaError(`far ${far} is outside the model's calibration, which covers false-accept rates ${first} to ${last}`);
  }
  const x = Math.log(far);
  for (let i = 1; i < table.length; i++) {
    const [f0, t0] = table[i - 1], [f1, t1] = table[i];
    if (far <= f1) {
      const a = Math.log(f0), b = Math.log(f1);
      return b === a ? t1 : t0 + ((x - a) / (b - a)) * (t1 - t0);
    }
  }
  return table[table.length - 1][1];
}

/**
 * Whether `op` accepts a query at squared distance `d` from its nearest prototype, which has
 * `shots` shots and squared length `sqNorm`, among `classes` classes.
 */
export function accepts(op, d, shots, classes, sqNorm) {
  if (op.tau === null) return true;
  if (!op.relative) return d <= op.tau;
  const scale = sqNorm * (1.0 + op.shotCoef / Math.max(shots, 1.0));
  return d <= op.tau * scale * Math.max(classes, 1) ** -op.classCoef;
}
