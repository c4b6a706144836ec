# SPDX-License-Identifier: MIT
# bash completion for cancel-token(1): subcommands, their options, and file
# names where an option takes a file.  Installed as
# share/bash-completion/completions/cancel-token.

_cancel_token() {
  local cur prev words cword
  if declare -F _init_completion >/dev/null; then
    _init_completion || return
  else
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
  fi

  local i sub=""
  for ((i = 1; i < cword; i++)); do
    [[ ${words[i]} == "--" ]] && return 0   # the command of "run": not ours
    if [[ -z $sub && ${words[i]} != -* ]]; then
      sub=${words[i]}
    fi
  done

  local common="--secret-file --connect-timeout --help"
  case $prev in
    --secret-file)
      COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    --timeout|--grace|--connect-timeout|--allow-uid)
      return 0 ;;   # a number: nothing to offer
  esac

  if [[ -z $sub ]]; then
    COMPREPLY=($(compgen -W "serve trigger wait status run help --help --version" -- "$cur"))
    return 0
  fi
  local opts
  case $sub in
    serve)   opts="$common --allow-uid --allow-any-uid" ;;
    trigger) opts="$common" ;;
    wait)    opts="$common --timeout --json" ;;
    status)  opts="$common --json" ;;
    run)     opts="$common --grace --" ;;
    help)    COMPREPLY=($(compgen -W "serve trigger wait status run" -- "$cur")); return 0 ;;
    *)       return 0 ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    # ADDRESS: a Unix socket path is a file name; HOST:PORT is typed.
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
  return 0
}
complete -F _cancel_token cancel-token
