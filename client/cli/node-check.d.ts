/** The oldest Node the CLI runs on. */
export declare const MINIMUM_NODE: string;
/** Why Node `version` (e.g. `v20.20.2`) cannot run the CLI, as one line, or null when it can. */
export declare function nodeVersionProblem(version: string): string | null;
