# bash completion for sbfs(1). The options of each command are read from
# `sbfs COMMAND --help`, so they never fall out of step with the binary.

# Mount points of sbfs mounts: fstype fuse or fuse.sbfs, source sbfs:...
_sbfs_mounts()
{
	local line mp rest fstype src IFS=$' \t\n'
	while IFS= read -r line; do
		rest=${line#* - }
		read -r fstype src _ <<<"$rest"
		[[ $fstype == fuse || $fstype == fuse.sbfs ]] || continue
		[[ $src == sbfs:* ]] || continue
		read -r _ _ _ _ mp _ <<<"$line"
		# mountinfo writes space, tab, newline and backslash as \ooo
		printf '%b\n' "$mp"
	done </proc/self/mountinfo 2>/dev/null
}

_sbfs()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local prog=${COMP_WORDS[0]} cmd="" i
	local cmds="reconcile status conflicts resolve mount umount forget ignore versions restore"
	COMPREPLY=()
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-*) ;;
		*) cmd=${COMP_WORDS[i]}; break ;;
		esac
	done
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$cmds --help --version" -- "$cur"))
		return
	fi
	case $prev in
	--auto-resolve)
		COMPREPLY=($(compgen -W "source target newer suggested" -- "$cur"))
		return ;;
	--log-file)
		COMPREPLY=($(compgen -f -- "$cur"))
		return ;;
	--state-dir)
		COMPREPLY=($(compgen -d -- "$cur"))
		return ;;
	--ignore | --add | --remove | --keep-versions | --keep-days)
		return ;;
	-o)
		COMPREPLY=($(compgen -W "ro allow_other allow_root default_permissions" -- "$cur"))
		return ;;
	esac
	if [[ $cur == -* ]]; then
		local opts
		opts=$("$prog" "$cmd" --help 2>/dev/null | grep -v '^Unmount' | grep -oE '(^|[ ,[|])--?[a-zA-Z][-a-zA-Z]*' |
			sed 's/^[ ,[|]//' | sort -u)
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
		return
	fi
	case $cmd in
	umount | unmount)
		local IFS=$'\n'
		COMPREPLY=($(compgen -W "$(_sbfs_mounts)" -- "$cur"))
		;;
	*)
		# SOURCE, TARGET, MOUNTPOINT (resolve's PATHs: any file)
		if [[ $cmd == resolve ]]; then
			COMPREPLY=($(compgen -f -- "$cur"))
		else
			COMPREPLY=($(compgen -d -- "$cur"))
		fi
		;;
	esac
}
complete -o filenames -F _sbfs sbfs
