import type { LegacyVm } from './legacy.ts';

/** A legacy VM to delete, with the record that named it. */
export interface VmToDelete extends LegacyVm {
  session_id: string;
  legacy_status: string | null;
}

/**
 * What a migration run did (or, in a dry run, would do). It names records, reasons, VMs and
 * error codes, and never quotes a legacy token.
 */
export interface MigrationReport {
  dry_run: boolean;
  source: string;
  target: string;
  /** True when the run was stopped before the end of the source; a re-run completes it. */
  interrupted: boolean;
  counts: {
    /** Legacy records fully examined. */
    scanned: number;
    /** Sessions created by this run (in a dry run: that would be created). */
    migrated: number;
    /** Sessions that an earlier run created already; left unchanged. */
    already_migrated: number;
    /** Records reported with reasons and not migrated. */
    odd: number;
    /** Records whose migration failed on an error; a re-run retries them. */
    failed: number;
  };
  /** Child documents copied below migrated sessions (in a dry run: that would be copied). */
  children: number;
  odd: Array<{ id: string; reasons: string[] }>;
  failed: Array<{ id: string; error: string }>;
  /** Every VM a scanned legacy record names, odd ones included: all of them may still bill. */
  vms: VmToDelete[];
  next_steps: string[];
}

/** A report with nothing in it yet. */
export function emptyReport(dryRun: boolean, source: string, target: string): MigrationReport {
  return {
    dry_run: dryRun,
    source,
    target,
    interrupted: false,
    counts: { scanned: 0, migrated: 0, already_migrated: 0, odd: 0, failed: 0 },
    children: 0,
    odd: [],
    failed: [],
    vms: [],
    next_steps: [],
  };
}

/** The advice that closes a report, from what the run found. */
export function nextSteps(report: MigrationReport): string[] {
  const steps: string[] = [];
  if (report.dry_run) steps.push('This was a dry run: nothing was written. Run again without --dry-run to migrate.');
  if (report.interrupted || report.counts.failed > 0) steps.push('Run the migration again: it resumes where it stopped and never duplicates a session.');
  if (report.counts.odd > 0) steps.push('Fix or decide on the odd records by hand; they were not migrated and stay in the archive.');
  if (report.vms.length > 0) steps.push('Delete the listed legacy VMs (gcloud compute instances delete INSTANCE --zone ZONE --project PROJECT) so they stop billing.');
  steps.push(
    `The legacy records in ${report.source} were left in place as an archive; delete them once the migrated sessions are verified (each session's first audit entry holds the archived record's SHA-256).`,
  );
  return steps;
}

/** The report for a terminal. */
export function formatReport(report: MigrationReport): string {
  const would = report.dry_run ? 'would migrate' : 'migrated';
  const c = report.counts;
  const lines = [
    `Migration ${report.source} -> ${report.target}${report.dry_run ? ' (dry run)' : ''}${report.interrupted ? ' (INTERRUPTED)' : ''}`,
    `  scanned ${c.scanned}, ${would} ${c.migrated}, already migrated ${c.already_migrated}, odd ${c.odd}, failed ${c.failed}; child documents ${report.dry_run ? 'to copy' : 'copied'}: ${report.children}`,
  ];
  if (report.odd.length > 0) {
    lines.push('', `Odd records (not migrated): ${report.odd.length}`);
    for (const odd of report.odd) lines.push(`  ${odd.id}`, ...odd.reasons.map((r) => `    - ${r}`));
  }
  if (report.failed.length > 0) {
    lines.push('', `Failed records (retried by a re-run): ${report.failed.length}`);
    for (const f of report.failed) lines.push(`  ${f.id}: ${f.error}`);
  }
  if (report.vms.length > 0) {
    lines.push('', `Legacy VMs to delete: ${report.vms.length}`);
    for (const vm of report.vms) {
      lines.push(`  project=${vm.project ?? '?'} zone=${vm.zone ?? '?'} instance=${vm.instance ?? '?'} (tee ${vm.session_id}, ${vm.legacy_status ?? 'unknown status'})`);
    }
  }
  lines.push('', 'Next steps:', ...report.next_steps.map((s) => `  - ${s}`));
  return lines.join('\n');
}
