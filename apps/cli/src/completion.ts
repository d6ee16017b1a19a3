/** `nuri completion bash|zsh`: completion scripts generated from the program itself, so they never miss a command or flag. */
import type { Command } from 'commander';

const flagsOf = (cmd: Command): string[] => [
  ...cmd.options.flatMap((o) => [o.short, o.long].filter((f): f is string => !!f)),
  '-h',
  '--help',
];
/** Words that follow a command which are not flags: subcommands, or a fixed choice. */
const wordsOf = (cmd: Command, program: Command): string[] => {
  if (cmd.commands.length) return cmd.commands.map((s) => s.name());
  if (cmd.name() === 'completion') return ['bash', 'zsh'];
  if (cmd.name() === 'help') return program.commands.map((s) => s.name());
  return [];
};
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export function completionScript(program: Command, shell: 'bash' | 'zsh'): string {
  const cmds = program.commands.map((x) => x.name());
  const all = [...cmds, 'help'];
  const helpCmd = { name: () => 'help', commands: [], options: [] } as unknown as Command;
  const cases = [...program.commands, helpCmd].map((cmd) => ({
    name: cmd.name(),
    flags: cmd.name() === 'help' ? [] : flagsOf(cmd),
    words: wordsOf(cmd, program),
  }));
  if (shell === 'bash')
    return `# nuri completion for bash: add  eval "$(nuri completion bash)"  to ~/.bashrc
_nuri() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" flags="" words=""
  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=( $(compgen -W ${quote([...all, '-h', '--help', '-V', '--version'].join(' '))} -- "$cur") )
    return 0
  fi
  case "\${COMP_WORDS[1]}" in
${cases.map((x) => `    ${x.name}) flags=${quote(x.flags.join(' '))}; words=${quote(x.words.join(' '))} ;;`).join('\n')}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "$flags" -- "$cur") )
  elif [[ -n "$words" && $COMP_CWORD -eq 2 ]]; then
    COMPREPLY=( $(compgen -W "$words" -- "$cur") )
  else
    COMPREPLY=()  # file names (-o default): batch scripts, working directories
  fi
  return 0
}
complete -o default -F _nuri nuri
`;
  const describe = program.commands.map((x) => quote(`${x.name()}:${x.summary() || x.description()}`)).join(' ');
  return `#compdef nuri
# nuri completion for zsh: add  eval "$(nuri completion zsh)"  to ~/.zshrc (after compinit)
_nuri() {
  local -a cmds flags subwords
  cmds=(${describe} 'help:show help for a command')
  if (( CURRENT == 2 )); then
    _describe -t commands 'nuri command' cmds
    return
  fi
  case $words[2] in
${cases.map((x) => `    ${x.name}) flags=(${x.flags.join(' ')}); subwords=(${x.words.join(' ')}) ;;`).join('\n')}
  esac
  if [[ $PREFIX == -* ]]; then
    compadd -- $flags
  elif (( CURRENT == 3 && $#subwords )); then
    compadd -- $subwords
  else
    _files
  fi
}
compdef _nuri nuri
`;
}
