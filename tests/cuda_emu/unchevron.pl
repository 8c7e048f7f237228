#!/usr/bin/perl
# Rewrites the kernel launches of a .cu file for g++ under the CPU emulator (make CUDA_EMU=1):
#   name<targs><<<grid, block, smem, stream>>>(args)  ->  cuda_emu_launcher(name<targs>, grid, block, smem, stream)(args)
#   name<<<grid, block, smem, stream>>>(args)  ->  cuda_emu_launcher_deduced([](auto... a_) { name(a_...); }, grid, ...)(args)
# (a kernel named without template arguments may be a template deduced from the arguments: the lambda deduces it)
# and keeps line numbers (a launch spread over lines stays spread the same way). Reads stdin, writes stdout.
use strict;
use warnings;
local $/;
my $src = <STDIN>;
$src =~ s{\b(?<name>[A-Za-z_]\w*(?:::\w+)*)\s*(?<tpl><(?:[^<>;]++|(?&tpl))*>)?\s*<<<(?<cfg>.*?)>>>\s*\(}{
    defined $+{tpl} ? "cuda_emu_launcher($+{name}$+{tpl}, $+{cfg})("
                    : "cuda_emu_launcher_deduced([](auto... a_) { $+{name}(a_...); }, $+{cfg})("
}gse;
die "unchevron: a <<< without a launch it understands\n" if $src =~ /<<<|>>>/;
print "#line 1 \"$ARGV[0]\"\n" if @ARGV;
print $src;
