/**
 * GitHub Actions workflow commands (`::error file=…,line=…,title=…::message`), the lines a
 * step prints for the runner to turn into annotations
 * (https://docs.github.com/actions/reference/workflow-commands-for-github-actions). Values are
 * escaped as the runner unescapes them (actions/toolkit `command.ts`): in the message
 * `%` → `%25`, CR → `%0D`, LF → `%0A`; in properties also `:` → `%3A` and `,` → `%2C`.
 */

/** Escapes a workflow command's message (the text after `::`). */
export function escapeWorkflowData(value: string): string {
  return value.replaceAll('%', '%25').replaceAll('\r', '%0D').replaceAll('\n', '%0A');
}

/** Escapes a workflow command's property value (`file=`, `title=`…). */
export function escapeWorkflowProperty(value: string): string {
  return escapeWorkflowData(value).replaceAll(':', '%3A').replaceAll(',', '%2C');
}

/** An annotation of a file: its path (relative to the repository root; '' for none), 1-based line when known, title and message. */
export interface Annotation {
  file: string;
  line: number | null;
  title: string;
  message: string;
}

/** One `::error file=…,line=…,title=…::message` line (no newline), every value escaped; `file` is left out when '', `line` when null. */
export function toErrorAnnotation(annotation: Annotation): string {
  const properties: string[] = [];
  if (annotation.file !== '') properties.push(`file=${escapeWorkflowProperty(annotation.file)}`);
  if (annotation.line !== null) properties.push(`line=${annotation.line}`);
  properties.push(`title=${escapeWorkflowProperty(annotation.title)}`);
  return `::error ${properties.join(',')}::${escapeWorkflowData(annotation.message)}`;
}
