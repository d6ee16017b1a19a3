console.log("nuri");
