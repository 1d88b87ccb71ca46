module github.com/sluice-gateway/sluice/benchmarks

go 1.26.0

replace github.com/sluice-gateway/sluice => ../

require github.com/sluice-gateway/sluice v0.0.0-00010101000000-000000000000
