/** The oldest Node the CLI runs on. */
export declare const MINIMUM_NODE: string;
/** Why Node `version` (e.g. `v20.20.2`) cannot run the CLI, as one line, or null when it can; `bundledNodeDir`: the repository's own Node 24, to suggest. */
export declare function nodeVersionProblem(version: string, bundledNodeDir?: string | null): string | null;
